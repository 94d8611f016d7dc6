"""Pseudo-inverses of argmax: the latent z that makes argmax(yhat + z) return a given token (SPEC §2.4)."""

from __future__ import annotations

import torch

from .transitions import LOG_FLOOR
from ..errors import DiceError
from .checks import check_number
from .gumbel import gumbel, truncated_gumbel
from .settings import INVERT

PSEUDO_INVERSES = ("onehot", "model", "lai")
STORES = ("float32", "bfloat16", "none")
MIN_MARGIN = 1e-3  # LAI margins below this could be eaten by float32 rounding of yhat + z


def check_margin(margin: float) -> float:
    """Return the LAI margin as a float after checking it is a finite number >= MIN_MARGIN."""
    return check_number("LAI margin", margin, f"a finite number >= {MIN_MARGIN} (float32 rounding must not flip the argmax)",
                        lambda v: v >= MIN_MARGIN)


def log_onehot(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return log onehot(x) with the finite floor: [B, D] -> [B, D, K] float32 (0 at x, LOG_FLOOR elsewhere)."""
    out = torch.full((*x.shape, num_classes), LOG_FLOOR, dtype=torch.float32, device=x.device)
    return out.scatter_(-1, x.unsqueeze(-1), 0.0)


def lai_latent(mu: torch.Tensor, label: torch.Tensor, margin: float, generator: torch.Generator) -> torch.Tensor:
    """Return VARIN's location-aware latent z [B, D, K]: argmax(mu + z) = label with a gap >= margin.

    top = mu_k + G; every other class gets a Gumbel(mu_i) truncated at top - margin; z = s - mu, so z
    looks like Gumbel noise conditioned on the label winning.
    """
    k_idx = label.unsqueeze(-1)
    mu64 = mu.double()
    top = mu64.gather(-1, k_idx) + gumbel(tuple(label.shape) + (1,), generator, device=mu.device, dtype=torch.float64)
    s = truncated_gumbel(mu64, top - margin, generator)
    return s.scatter_(-1, k_idx, top).sub_(mu64).float()


def latent(kind: str, yhat: torch.Tensor, label: torch.Tensor, *, target: torch.Tensor | None = None,
           margin: float = INVERT.margin, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return z [B, D, K] = target - yhat for pseudo-inverse `kind` and labels [B, D].

    onehot: target = log onehot(label); model: target given (the model's own t = 0 log-probs,
    already merged with one-hot rows where the method requires); lai: see `lai_latent`.
    """
    if kind == "onehot":
        return log_onehot(label, yhat.shape[-1]) - yhat
    if kind == "model":
        if target is None:
            raise DiceError("pseudo_inverse='model' needs the model's t = 0 prediction as target")
        return target - yhat
    if kind == "lai":
        if generator is None:
            raise DiceError("pseudo_inverse='lai' needs a generator")
        return lai_latent(yhat, label, margin, generator)
    raise DiceError(f"unknown pseudo_inverse {kind!r}; expected one of {', '.join(map(repr, PSEUDO_INVERSES))}")


def to_storage(z: torch.Tensor, winner: torch.Tensor, store: str) -> torch.Tensor | None:
    """Return z as kept for `store`: float32, bfloat16 rounded so that `winner` [B, D] still wins, or None.

    bfloat16 keeps 8 bits of mantissa: plain rounding can cost a few tenths of a logit, more than
    an LAI margin or the gap between a `model` target's top classes. `winner` is the class the
    float32 reconstruction picks at this step, argmax(yhat + z) for the yhat it sees then.
    Rounding that class's entry up and every other entry down can only widen its lead, and float32
    addition is monotone, so argmax(yhat + z_stored) is the same class for that same yhat (ties
    included: the winner keeps the lowest index among equals): all store modes reconstruct alike.
    """
    if store == "none":
        return None
    if store == "float32":
        return z.float()
    up = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, winner.unsqueeze(-1), True)
    r = z.to(torch.bfloat16)
    rf = r.float()
    inf = torch.full_like(r, float("inf"))
    r = torch.where(up & (rf < z), torch.nextafter(r, inf), r)
    r = torch.where(~up & (rf > z), torch.nextafter(r, -inf), r)
    return r
