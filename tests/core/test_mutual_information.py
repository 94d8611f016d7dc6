"""Mutual information of latents (DICE Remark 3.1, Fig. 3)."""

from __future__ import annotations

import math

import pytest

from dicelib.core.mutual_information import discrete_mi, gaussian_mi, gaussian_mi_monte_carlo, linear_betas
from dicelib.core.transitions import MultinomialSchedule


def test_closed_form_matches_the_paper():
    mi = gaussian_mi(linear_betas(1000, 1e-4, 0.02))
    assert mi[0].item() == pytest.approx(5.00025e-5, rel=1e-5)
    assert bool((mi[1:] < mi[:-1]).all())


@pytest.mark.parametrize("t", [1, 50, 400])
def test_monte_carlo_agrees_within_three_standard_errors(t, gen):
    betas = linear_betas()
    est, se = gaussian_mi_monte_carlo(betas, t, 400_000, gen)
    assert abs(est - gaussian_mi(betas)[t - 1].item()) < 3 * se
    # a deliberately wrong schedule is caught by the same check at t = 1
    wrong = gaussian_mi(linear_betas(1000, 1e-3, 0.02))[0].item()
    if t == 1:
        assert abs(est - wrong) > 3 * se


def test_discrete_mi_starts_at_log_k_and_decays():
    sched = MultinomialSchedule.vq_linear(20)
    for k in (2, 5):
        mi = discrete_mi(k, sched)
        assert mi[0].item() == pytest.approx(math.log(k), rel=1e-3)
        assert bool((mi[1:] <= mi[:-1] + 1e-9).all()) and mi[-1].item() < 0.1 * math.log(k)
