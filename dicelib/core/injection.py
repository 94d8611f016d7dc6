"""Noise injection functions f(yhat, z, g; lambda1, lambda2) of editing (DICE App. D.1, SPEC §2.5)."""

from __future__ import annotations

import math

import torch

from ..errors import DiceError, check_choice
from .checks import check_number
from .settings import EDIT

INJECTIONS = ("add", "variance_preserving", "max")


def check_lambdas(lambda1: float, lambda2: float, injection: str) -> None:
    """Raise a DiceError for non-finite lambdas, or negative ones where the injection takes square roots."""
    check_choice("injection", injection, INJECTIONS)
    roots = injection == "variance_preserving"
    for name, v in (("lambda1", lambda1), ("lambda2", lambda2)):
        check_number(name, v, "a finite number" + (" >= 0 for variance_preserving injection" if roots else ""),
                     (lambda x: x >= 0) if roots else None)


def inject(yhat: torch.Tensor, z: torch.Tensor, g: torch.Tensor, lambda1: float, lambda2: float,
           injection: str = EDIT.injection) -> torch.Tensor:
    """Return ytilde [..., K]: the prediction `yhat` corrected by latent `z` and perturbed by Gumbel `g`."""
    if injection == "add":
        return yhat + lambda1 * z + lambda2 * g
    if injection == "variance_preserving":
        return yhat + math.sqrt(lambda1) * z + math.sqrt(lambda2) * g
    if injection == "max":
        return yhat + torch.maximum(lambda1 * z, lambda2 * g)
    raise DiceError(f"unknown injection {injection!r}; expected one of {', '.join(map(repr, INJECTIONS))}")
