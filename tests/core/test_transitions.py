"""Mask-and-replace transitions: closed forms, posteriors, and agreement with diffusers."""

from __future__ import annotations

import pytest
import torch

from dicelib.core.transitions import (MultinomialSchedule, cumulative_matrix, log_model_posterior,
                                 log_q_xt_given_x0, one_step_matrix, transition_matrix)
from dicelib.errors import DiceError

K = 6


@pytest.fixture(params=["vq", "replace_heavy"])
def schedule(request):
    if request.param == "vq":
        return MultinomialSchedule.vq_linear(12)
    # a schedule with plenty of uniform replacement, so the token branches matter
    t = torch.linspace(0, 1, 13, dtype=torch.float64)
    return MultinomialSchedule(1 - 0.9 * t, 0.5 * t)


def test_closed_form_equals_product_of_one_step_matrices(schedule):
    prod = torch.eye(K + 1, dtype=torch.float64)
    for t in range(1, schedule.num_steps + 1):
        prod = one_step_matrix(t, schedule, K) @ prod
        assert torch.allclose(prod, cumulative_matrix(t, schedule, K), atol=1e-12)
        assert torch.allclose(prod.sum(0), torch.ones(K + 1, dtype=torch.float64))


def test_log_q_matches_cumulative_matrix(schedule):
    x0 = torch.arange(K + 1).view(1, -1)  # every state, the mask included
    for t in (1, 5, schedule.num_steps):
        q = log_q_xt_given_x0(x0, t, schedule, K).exp()[0]  # [x0, x_t]
        assert torch.allclose(q, cumulative_matrix(t, schedule, K).T, atol=1e-12)


def composed(s: int, t: int, schedule) -> torch.Tensor:
    """Return Q_t ... Q_{s+1}: q(x_t | x_s) as the product of one-step matrices."""
    prod = torch.eye(K + 1, dtype=torch.float64)
    for u in range(s + 1, t + 1):
        prod = one_step_matrix(u, schedule, K) @ prod
    return prod


def brute_force_posterior(p_x0: torch.Tensor, x_t: int, q_st: torch.Tensor, q_s: torch.Tensor) -> torch.Tensor:
    """Return p(x_s | x_t) = sum_j q(x_s | x_t, x0=j) p(j) [K+1], enumerating x_s: q(x_s=i | x_t, j) is
    q(x_t | i) q(i | j) / sum_i' q(x_t | i') q(i' | j), over the j with q(x_t | j) > 0."""
    lik = q_st[x_t].unsqueeze(1) * q_s[:, :K]  # [i, j]
    norm = lik.sum(0)
    ok = norm > 0
    want = (lik[:, ok] / norm[ok] * p_x0[ok]).sum(1)
    return want / want.sum()


def check_posterior(log_p_x0: torch.Tensor, s: int, t: int, schedule, q_st: torch.Tensor) -> None:
    """Assert log_model_posterior from s to t equals the brute force for every observed x_t (row x_t of log_p_x0)."""
    got = log_model_posterior(log_p_x0.float(), torch.arange(K + 1).view(1, -1), t, schedule, s).double().exp()[0]
    for x_t in range(K + 1):
        want = brute_force_posterior(log_p_x0[0, x_t].exp(), x_t, q_st, cumulative_matrix(s, schedule, K))
        assert torch.allclose(got[x_t], want, atol=1e-5), (s, t, x_t)
        assert abs(got[x_t].sum().item() - 1) < 1e-4


def test_model_posterior_equals_brute_force_bayes(schedule, gen):
    log_p_x0 = torch.log_softmax(torch.randn(1, K + 1, K, generator=gen, dtype=torch.float64) * 2, -1)
    for t in (1, 2, 7, schedule.num_steps):
        check_posterior(log_p_x0, t - 1, t, schedule, one_step_matrix(t, schedule, K))


def test_transition_matrix_composes_one_step_matrices(schedule):
    big_t = schedule.num_steps
    for s in range(big_t):
        for t in range(s + 1, big_t + 1):
            q = transition_matrix(s, t, schedule, K)
            assert torch.allclose(q, composed(s, t, schedule), atol=1e-12), (s, t)
            assert torch.allclose(q @ cumulative_matrix(s, schedule, K), cumulative_matrix(t, schedule, K), atol=1e-12)
        assert torch.equal(transition_matrix(s, s + 1, schedule, K), one_step_matrix(s + 1, schedule, K))


SKIPS = [(0, 2), (0, 12), (1, 5), (3, 7), (2, 12), (6, 9), (10, 12)]


@pytest.mark.parametrize("route", ["composed", "cumulative"])
@pytest.mark.parametrize("onehot", [False, True])
def test_skip_posterior_equals_brute_force_bayes(schedule, route, onehot, gen):
    """q(x_s | x_t, x0) for s < t - 1, summed over p(x0) (one-hot: q(x_s | x_t, x0) itself), against Bayes
    with q(x_t | x_s) from composing one-step matrices or from the cumulative ones: Qbar_t Qbar_s^-1."""
    logits = torch.randn(1, K + 1, K, generator=gen, dtype=torch.float64) * 2
    if onehot:
        logits = torch.where(logits == logits.max(-1, keepdim=True).values, 0.0, float("-inf")).double()
    log_p_x0 = torch.log_softmax(logits, -1)
    for s, t in SKIPS:
        if route == "composed":
            q_st = composed(s, t, schedule)
        else:
            q_st = cumulative_matrix(t, schedule, K) @ torch.linalg.inv(cumulative_matrix(s, schedule, K))
        check_posterior(log_p_x0, s, t, schedule, q_st)


def test_single_step_posterior_is_the_default_bit_for_bit(schedule, gen):
    log_p_x0 = torch.log_softmax(torch.randn(2, 9, K, generator=gen), -1)
    xt = torch.randint(K + 1, (2, 9), generator=gen)
    for t in range(1, schedule.num_steps + 1):
        assert torch.equal(log_model_posterior(log_p_x0, xt, t, schedule, t - 1), log_model_posterior(log_p_x0, xt, t, schedule))


@pytest.mark.parametrize("s, t", [(3, 3), (4, 2), (-1, 2), (0, 13), (0.0, 2)])
def test_transition_rejects_bad_timesteps(schedule, s, t):
    with pytest.raises(DiceError, match=rf"0 <= s < t <= T=12, got s={s!r}, t={t!r}"):
        schedule.transition(s, t)


def test_agrees_with_diffusers_vq_diffusion_scheduler(gen):
    diffusers = pytest.importorskip("diffusers")
    k_tokens, big_t = 9, 20
    sched = diffusers.VQDiffusionScheduler(num_vec_classes=k_tokens + 1, num_train_timesteps=big_t)
    ours = MultinomialSchedule.vq_linear(big_t)
    log_p_x0 = torch.log_softmax(torch.randn(2, k_tokens, 5, generator=gen) * 2, 1)  # diffusers: [B, K, N]
    xt = torch.randint(k_tokens + 1, (2, 5), generator=gen)
    xt[0, :2] = k_tokens  # some masked positions
    for t in range(1, big_t + 1):
        theirs = sched.q_posterior(log_p_x0, xt, torch.tensor(t - 1))  # their 0-based timestep = our t
        mine = log_model_posterior(log_p_x0.transpose(1, 2), xt, t, ours)  # [B, N, K+1]
        theirs_n = theirs - torch.logsumexp(theirs, 1, keepdim=True)
        assert torch.allclose(mine.transpose(1, 2).exp(), theirs_n.exp(), atol=1e-4), f"t={t}"
