"""Editing semantics: lambda1 = 0 samples the model, lambda schedules, guidance."""

from __future__ import annotations

import dataclasses
import pytest
import torch
from scipy import stats

import dicelib
from dicelib.core.guidance import predict_log_probs
from dicelib.core.schedules import LambdaSchedule, mask_levels
from dicelib.core.toy import RandomDenoiser


def _chi_square_p(samples: torch.Tensor, probs: torch.Tensor) -> float:
    n = samples.numel()
    observed = torch.bincount(samples, minlength=probs.numel()).double()
    expected = probs.double() * n
    keep = expected >= 5
    obs = torch.cat([observed[keep], observed[~keep].sum().view(1)])
    exp = torch.cat([expected[keep], expected[~keep].sum().view(1)])
    if exp[-1] < 5:  # fold a tiny remainder into the largest cell
        obs, exp = obs[:-1], exp[:-1]
        obs[exp.argmax()] += observed[~keep].sum()
        exp[exp.argmax()] += expected[~keep].sum()
    return stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue


@pytest.mark.parametrize("method", ["masked", "multinomial"])
def test_lambda1_zero_samples_the_models_own_distribution(method, gen):
    k, d, n = 12, 3, 6000
    model = RandomDenoiser(k, d, scale=2.0, seed=3)
    x0 = torch.randint(k, (1, d), generator=gen).expand(n, d).contiguous()
    cond = torch.full((n,), 2)
    if method == "masked":  # one step from an all-[MASK] state: x ~ softmax(D(mask, 1, c))
        inv = dicelib.invert(model, x0, cond, steps=1, noise="mask", generator=gen)
    else:  # a one-step chain that masks everything: x0 ~ p(x0 | all masked)
        sched = dicelib.MultinomialSchedule(torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64))
        inv = dicelib.invert(model, x0, cond, method="multinomial", schedule=sched, generator=gen)
    out = dicelib.edit(model, inv, cond, lambda1=0.0, lambda2=1.0, generator=gen)
    masked = torch.full((1, d), model.mask_id)
    probs = torch.softmax(model.logits(masked, torch.ones(1), torch.tensor([2])), -1)[0]
    for pos in range(d):
        p = _chi_square_p(out[:, pos], probs[pos])
        assert p > 1e-3, f"position {pos}: edit samples differ from the model (p={p:.2e})"
    assert not torch.equal(out, x0)


def test_latent_weight_controls_how_much_of_the_source_survives(gen):
    model = RandomDenoiser(10, 16, scale=5.0)
    x0 = torch.randint(10, (8, 16), generator=gen)
    inv = dicelib.invert(model, x0, torch.zeros(8, dtype=torch.long), steps=8, pseudo_inverse="lai", generator=gen)
    target = torch.full((8,), 3)
    kept = [(dicelib.edit(model, inv, target, lambda1=l1, lambda2=1 - l1, generator=torch.Generator().manual_seed(0))
             == x0).float().mean().item() for l1 in (0.0, 0.5, 1.0)]
    assert kept[0] < kept[1] < kept[2], kept


class Counting:
    """Wraps a denoiser and records the number of rows of every call."""

    def __init__(self, model):
        self.model, self.rows = model, []
        self.num_classes, self.mask_id, self.null_cond = model.num_classes, model.mask_id, model.null_cond

    def logits(self, x, t, cond):
        self.rows.append(x.shape[0])
        return self.model.logits(x, t, cond)


def test_cfg_scale_one_is_guidance_off_bit_for_bit(gen):
    model = Counting(RandomDenoiser(7, 5))
    x = torch.randint(8, (3, 5), generator=gen)
    t, c = torch.full((3,), 0.5), torch.tensor([0, 1, 2])
    a = predict_log_probs(model, [(x, t, c)], None, 0.7)[0]
    b = predict_log_probs(model, [(x, t, c)], 1.0, 0.7)[0]
    assert torch.equal(a, b) and model.rows == [3, 3], "w = 1 must skip the unconditional pass"
    sharper = predict_log_probs(model, [(x, t, c)], None, 0.5)[0]
    assert bool((sharper.max(-1).values >= a.max(-1).values - 1e-6).all())


@pytest.mark.parametrize("store", ["float32", "none"])
def test_edit_with_cfg_scale_one_switches_the_inversions_guidance_off(gen, store):
    model = RandomDenoiser(7, 5)
    x0, cond, target = torch.randint(7, (2, 5), generator=gen), torch.tensor([0, 1]), torch.tensor([2, 3])
    inv = dicelib.invert(model, x0, cond, steps=4, pseudo_inverse="lai", store=store, cfg_scale=None, generator=gen)
    assert torch.equal(dicelib.invert(model, x0, cond, steps=4, pseudo_inverse="lai", cfg_scale=1.0,
                                      generator=torch.Generator().manual_seed(3)).latents,
                       dicelib.invert(model, x0, cond, steps=4, pseudo_inverse="lai", cfg_scale=None,
                                      generator=torch.Generator().manual_seed(3)).latents)
    edits = {}
    for cfg in (None, 1.0):
        counting = Counting(model)
        edits[cfg] = dicelib.edit(counting, inv, target, cfg_scale=cfg, generator=torch.Generator().manual_seed(4))
        # store="none" batches the edit rows with the recomputed inversion rows: one pass of 2B rows
        assert counting.rows == [2 if store == "float32" else 4] * 4, (cfg, counting.rows)
    assert torch.equal(edits[None], edits[1.0])
    if store == "float32":  # an inversion made with guidance: an explicit 1.0 is off, not "the inversion's 3.0"
        guided = dataclasses.replace(inv, cfg_scale=3.0)
        counting = Counting(model)
        off = dicelib.edit(counting, guided, target, cfg_scale=1.0, generator=torch.Generator().manual_seed(4))
        assert torch.equal(off, edits[None]) and counting.rows == [2] * 4


def test_mask_levels_are_nested_and_end_at_kappa_tau():
    for name in ("linear", "cosine", "root", "arccos", "cubic"):
        lv = mask_levels(10, 0.8, name)
        assert bool((lv[1:] > lv[:-1]).all()) and 0 < lv[0]
    assert mask_levels(4, 1.0, "cosine")[-1].item() == pytest.approx(1.0)
    assert mask_levels(4, 0.5, "linear").tolist() == pytest.approx([0.125, 0.25, 0.375, 0.5])


def test_lambda_schedules_run_from_start_to_end():
    levels = torch.linspace(1.0, 0.1, 10, dtype=torch.float64)  # editing order: noisiest first
    for kind in ("linear", "exponential", "mi"):
        v = LambdaSchedule(kind, 0.2, 0.9).values(levels)
        assert v[0].item() == pytest.approx(0.2) and v[-1].item() == pytest.approx(0.9)
        assert bool((v[1:] >= v[:-1] - 1e-12).all()), kind
    assert LambdaSchedule("uniform", 0.4).values(levels).tolist() == [0.4] * 10
    exp = LambdaSchedule("exponential", 0.1, 0.4).values(torch.ones(3, dtype=torch.float64))
    assert exp.tolist() == pytest.approx([0.1, 0.2, 0.4])


def test_nonuniform_lambda_schedule_reconstructs_with_lambda1_end_one(gen):
    model = RandomDenoiser(8, 6)
    x0 = torch.randint(8, (2, 6), generator=gen)
    inv = dicelib.invert(model, x0, torch.tensor([0, 1]), steps=6, generator=gen)
    out = dicelib.edit(model, inv, torch.tensor([0, 1]), lambda1=1.0, lambda2=0.0, lambda_schedule="linear", lambda1_end=1.0)
    assert torch.equal(out, x0)


def test_temperature_schedule_moves_linearly_over_the_steps_and_reconstructs_exactly(gen):
    from dicelib.core.guidance import temperature_at

    assert [temperature_at((0.2, 1.2), i, 6) for i in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
    assert temperature_at((0.2, 1.2), 0, 1) == 1.2 and temperature_at(0.7, 3, 6) == 0.7
    model = RandomDenoiser(12, 10, scale=3.0)
    x0 = torch.randint(12, (3, 10), generator=gen)
    cond, target = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 3])
    for store in ("float32", "none"):
        inv = dicelib.invert(model, x0, cond, steps=6, pseudo_inverse="lai", temperature=(0.2, 1.2), store=store,
                             cfg_scale=2.0, generator=torch.Generator().manual_seed(1))
        assert inv.temperature == (0.2, 1.2)
        assert torch.equal(dicelib.reconstruct(model, inv), x0)
    constant = dicelib.invert(model, x0, cond, steps=6, pseudo_inverse="lai", temperature=0.7,
                              generator=torch.Generator().manual_seed(1))
    edits = [dicelib.edit(model, i, target, lambda1=0.5, generator=torch.Generator().manual_seed(2)) for i in (inv, constant)]
    assert not torch.equal(edits[0], edits[1])  # the schedule is used, not its mean
    with pytest.raises(dicelib.DiceError, match="temperature"):
        dicelib.invert(model, x0, cond, temperature=(0.2, 1.2, 3.0))
    with pytest.raises(dicelib.DiceError, match="temperature"):
        dicelib.invert(model, x0, cond, temperature=(0.2, 0.0))
