"""Mask-and-replace transitions: closed forms, posteriors, and agreement with diffusers."""

from __future__ import annotations

import pytest
import torch

from dicelib.core.transitions import (MultinomialSchedule, cumulative_matrix, log_model_posterior,
                                 log_q_xt_given_x0, one_step_matrix)

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


def test_model_posterior_equals_brute_force_bayes(schedule, gen):
    log_p_x0 = torch.log_softmax(torch.randn(1, K + 1, K, generator=gen, dtype=torch.float64) * 2, -1)
    xt = torch.arange(K + 1).view(1, -1)  # each possible observed state once
    for t in (1, 2, 7, schedule.num_steps):
        got = log_model_posterior(log_p_x0.float(), xt, t, schedule).double().exp()[0]  # [s, i]
        q_step, q_prev = one_step_matrix(t, schedule, K), cumulative_matrix(t - 1, schedule, K)
        for s in range(K + 1):
            # p(x_{t-1}=i | x_t=s) = sum_j q(x_t=s|i) q(i|x0=j) / q(s|j) p(j), over j with q(s|j) > 0
            p_j = log_p_x0[0, s].exp()
            lik = (q_step[s].unsqueeze(1) * q_prev[:, :K])  # [i, j]
            norm = lik.sum(0)
            ok = norm > 0
            want = (lik[:, ok] / norm[ok] * p_j[ok]).sum(1)
            want = want / want.sum()
            assert torch.allclose(got[s], want, atol=1e-5), (t, s)
            assert abs(got[s].sum().item() - 1) < 1e-4


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
