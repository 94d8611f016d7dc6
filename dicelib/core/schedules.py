"""Masking schedules (noise levels of the masked method) and lambda schedules of editing (SPEC §2.6)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import DiceError, check_choice
from .checks import check_number
from .settings import EDIT, INVERT

# kappa(t): fraction of masked tokens at time t in [0, 1] (Discrete Interpolants, Table 1)
MASK_SCHEDULES = {
    "linear": lambda t: t,
    "cosine": lambda t: 1 - math.cos(math.pi * t / 2),
    "root": lambda t: math.sqrt(t),
    "arccos": lambda t: 1 - 2 * math.acos(t) / math.pi,
    "cubic": lambda t: t**3,
}
LAMBDA_SCHEDULES = ("uniform", "linear", "exponential", "mi")


def check_tau(tau: float) -> float:
    """Return tau as a float after checking it is a number in (0, 1]."""
    return check_number("tau", tau, "a number in (0, 1]", lambda v: 0 < v <= 1)


def check_steps(steps: int) -> int:
    """Return steps as an int after checking it is an int >= 1."""
    return check_number("steps", steps, "an int >= 1", lambda v: v >= 1, integer=True)


def mask_levels(steps: int, tau: float = INVERT.tau, schedule: str = INVERT.mask_schedule) -> torch.Tensor:
    """Return the noise levels s_1 < ... < s_N = kappa(tau): kappa on the even grid tau * i / N, [N] float64."""
    steps, tau = check_steps(steps), check_tau(tau)
    kappa = MASK_SCHEDULES[check_choice("mask schedule", schedule, tuple(MASK_SCHEDULES))]
    return torch.tensor([kappa(tau * i / steps) for i in range(1, steps + 1)], dtype=torch.float64)


@dataclass(frozen=True)
class LambdaSchedule:
    """lambda1 over editing progress p in [0, 1] (p = 0 noisiest step), from `start` to `end`.

    `mi` makes lambda1 follow the normalised Gaussian mutual-information curve of §2.7 over the
    editing steps' noise levels: little trust in the latents where they carry little information.
    """

    kind: str = EDIT.lambda_schedule
    start: float = EDIT.lambda1  # lambda1 at the first (noisiest) editing step
    end: float = EDIT.lambda1_end  # lambda1 at the last step (ignored by uniform)

    def __post_init__(self) -> None:
        check_choice("lambda schedule", self.kind, LAMBDA_SCHEDULES)
        for name, attr in (("lambda1", "start"), ("lambda1_end", "end")):  # named as edit() calls them
            object.__setattr__(self, attr, check_number(name, getattr(self, attr)))  # numpy scalars become floats
        if self.kind == "exponential" and (self.start <= 0 or self.end <= 0):
            raise DiceError(f"the exponential lambda schedule needs start, end > 0, got {self.start}, {self.end}")

    def values(self, levels: torch.Tensor) -> torch.Tensor:
        """Return lambda1 at each editing step, given the steps' noise levels in editing order: [n] float64."""
        n = levels.numel()
        p = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.ones(1, dtype=torch.float64)
        if self.kind == "uniform":
            return torch.full((n,), float(self.start), dtype=torch.float64)
        if self.kind == "linear":
            return self.start + (self.end - self.start) * p
        if self.kind == "exponential":
            return self.start * (self.end / self.start) ** p
        from .mutual_information import gaussian_mi_at_levels

        mi = gaussian_mi_at_levels(levels.double())
        span = mi.max() - mi.min()
        w = (mi - mi.min()) / span if span > 0 else torch.ones_like(mi)
        return self.start + (self.end - self.start) * w
