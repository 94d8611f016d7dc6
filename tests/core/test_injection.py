"""Injection functions against hand-computed values, directly and through a whole edit step."""

from __future__ import annotations

import pytest
import torch

import dicelib
from dicelib.core.gumbel import gumbel
from dicelib.core.injection import inject
from dicelib.core.toy import RandomDenoiser

YHAT = torch.tensor([[0.5, -1.0, 2.0]])
Z = torch.tensor([[1.0, 3.0, -2.0]])
G = torch.tensor([[0.2, -0.4, 1.5]])

# lambda1 = 0.64, lambda2 = 0.25 (square roots 0.8 and 0.5), worked out by hand:
# add:                 yhat + 0.64 z + 0.25 g         = [0.5 + 0.64 + 0.05, -1 + 1.92 - 0.1, 2 - 1.28 + 0.375]
# variance_preserving: yhat + 0.8 z + 0.5 g           = [0.5 + 0.8 + 0.1,   -1 + 2.4 - 0.2,  2 - 1.6 + 0.75]
# max:                 yhat + max(0.64 z, 0.25 g)     = [0.5 + 0.64,        -1 + 1.92,       2 + 0.375]
HAND = {
    "add": [1.19, 0.82, 1.095],
    "variance_preserving": [1.4, 1.2, 1.15],
    "max": [1.14, 0.92, 2.375],
}


@pytest.mark.parametrize("injection", sorted(HAND))
def test_injection_matches_hand_computed_values(injection):
    out = inject(YHAT, Z, G, 0.64, 0.25, injection)
    torch.testing.assert_close(out, torch.tensor([HAND[injection]]), rtol=0, atol=1e-6)


def test_the_three_injections_differ_when_lambda2_is_positive():
    outs = {name: inject(YHAT, Z, G, 0.64, 0.25, name) for name in HAND}
    assert not torch.equal(outs["add"], outs["variance_preserving"]) and not torch.equal(outs["add"], outs["max"])


@pytest.mark.parametrize("injection", sorted(HAND))
def test_one_edit_step_uses_the_injection_formula(injection):
    """A one-step masked edit is argmax(yhat' + injection(z, g)): rebuild it by hand from its parts."""
    k, d = 50, 40
    model = RandomDenoiser(k, d, scale=3.0, seed=3)
    x0 = torch.randint(k, (2, d), generator=torch.Generator().manual_seed(0))
    source, target = torch.tensor([0, 1]), torch.tensor([2, 3])
    inv = dicelib.invert(model, x0, source, steps=1, tau=1.0, pseudo_inverse="lai", noise="uniform",
                         generator=torch.Generator().manual_seed(1))
    l1, l2 = 0.64, 0.25
    out = dicelib.edit(model, inv, target, lambda1=l1, lambda2=l2, injection=injection,
                       generator=torch.Generator().manual_seed(2))
    x1 = torch.where(inv.u < inv.levels[0], inv.noise, inv.x0)  # the only state: fully renoised at tau = 1
    yhat = torch.log_softmax(model.logits(x1, torch.ones(2), target), -1).clamp(min=-70.0)
    z = inv.latents[0]
    g = gumbel(tuple(yhat.shape), torch.Generator().manual_seed(2))  # edit's one draw from its generator
    by_hand = {"add": yhat + l1 * z + l2 * g,
               "variance_preserving": yhat + l1**0.5 * z + l2**0.5 * g,
               "max": yhat + torch.maximum(l1 * z, l2 * g)}
    assert torch.equal(out, by_hand[injection].argmax(-1))
    others = [name for name in by_hand if name != injection]
    assert any(not torch.equal(out, by_hand[o].argmax(-1)) for o in others), "the case must tell injections apart"
