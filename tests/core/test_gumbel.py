"""Gumbel-max sampling, truncated Gumbel draws and the LAI latent."""

from __future__ import annotations

import math

import torch
from scipy import stats

from dicelib.core.gumbel import gumbel, gumbel_argmax, truncated_gumbel
from dicelib.core.pseudo_inverse import lai_latent, log_onehot, to_storage


def test_gumbel_max_matches_softmax_chi_square(gen):
    k, n = 1000, 200_000
    logits = torch.randn(k, generator=gen, dtype=torch.float64) * 1.5
    draws = gumbel_argmax(logits.expand(n, k), gen)
    observed = torch.bincount(draws, minlength=k).double()
    expected = torch.softmax(logits, 0) * n
    # pool rare classes so every expected count is >= 5
    order = torch.argsort(expected)
    obs_s, exp_s = observed[order], expected[order]
    cut = int((torch.cumsum(exp_s, 0) < 50).sum())
    obs = torch.cat([obs_s[:cut].sum().view(1), obs_s[cut:]])
    exp = torch.cat([exp_s[:cut].sum().view(1), exp_s[cut:]])
    p = stats.chisquare(obs.numpy(), exp.numpy()).pvalue
    assert p > 1e-3, f"Gumbel-max frequencies differ from softmax (chi-square p={p:.2e})"


def test_gumbel_draws_are_reproducible_and_standard(gen):
    g1 = gumbel((100_000,), torch.Generator().manual_seed(7))
    g2 = gumbel((100_000,), torch.Generator().manual_seed(7))
    assert torch.equal(g1, g2)
    assert abs(g1.double().mean().item() - 0.5772156649) < 0.02  # Euler-Mascheroni
    assert abs(g1.double().var().item() - math.pi**2 / 6) < 0.05


def test_truncated_gumbel_respects_bound_and_conditional_law(gen):
    n = 50_000
    mu, b = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    s = truncated_gumbel(mu.expand(n), b.expand(n), gen)
    assert bool((s <= b).all())
    # P(G <= x | G <= b) = F(x) / F(b) with F the Gumbel(mu) cdf
    cdf = lambda x: torch.exp(-torch.exp(-(torch.as_tensor(x) - mu))) / torch.exp(-torch.exp(-(b - mu)))
    p = stats.kstest(s.numpy(), lambda x: cdf(x).numpy()).pvalue
    assert p > 1e-3, f"truncated Gumbel does not follow the conditional law (KS p={p:.2e})"


def test_lai_latent_puts_argmax_on_label_with_margin(gen):
    mu = torch.log_softmax(torch.randn(4, 30, 50, generator=gen) * 3, -1)
    label = torch.randint(50, (4, 30), generator=gen)
    for margin in (0.01, 1.0, 4.0):
        z = lai_latent(mu, label, margin, gen)
        y = mu + z
        assert torch.equal(y.argmax(-1), label)
        top = y.gather(-1, label.unsqueeze(-1))
        others = y.scatter(-1, label.unsqueeze(-1), float("-inf"))
        assert bool((top - others.max(-1, keepdim=True).values >= margin - 1e-4).all())


def test_lai_latent_looks_like_gumbel_noise_at_the_label(gen):
    # at the label, z = G ~ Gumbel(0, 1) exactly
    mu = torch.zeros(20_000, 1, 5)
    label = torch.zeros(20_000, 1, dtype=torch.long)
    z = lai_latent(mu, label, 1.0, gen)[:, 0, 0].double()
    assert stats.kstest(z.numpy(), stats.gumbel_r.cdf).pvalue > 1e-3


def test_bfloat16_storage_keeps_argmax_and_margin(gen):
    mu = torch.log_softmax(torch.randn(8, 64, 300, generator=gen) * 10, -1).clamp(min=-70)
    label = torch.randint(300, (8, 64), generator=gen)
    for z in (log_onehot(label, 300) - mu, lai_latent(mu, label, 0.05, gen)):
        zb = to_storage(z, label, "bfloat16")
        assert zb.dtype == torch.bfloat16
        assert torch.equal((mu + zb.float()).argmax(-1), label)
    naive = (mu + lai_latent(mu, label, 0.001, gen).to(torch.bfloat16).float()).argmax(-1)
    assert not torch.equal(naive, label), "plain bfloat16 rounding should break small margins (else this test is vacuous)"
