"""Gumbel noise, Gumbel-max sampling and truncated Gumbel draws (SPEC §2.1).

Draws are made in float64 and cast afterwards: float32 Gumbel-max sampling is measurably
biased for large vocabularies (u rounds to 1 and the tail is cut).
"""

from __future__ import annotations

import torch


def uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str | None = None,
            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Return U(0,1) draws of `shape` from `generator` (on the generator's device), cast to `dtype`."""
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)
    return u.to(device=device if device is not None else generator.device, dtype=dtype)


def gumbel(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str | None = None,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return standard Gumbel(0, 1) noise `-log(-log u)`, drawn in float64 and cast to `dtype`."""
    tiny = torch.finfo(torch.float64).tiny
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)
    g = u.clamp_(min=tiny).log_().neg_().log_().neg_()  # u == 0 would give -inf; in place: no temporaries
    return g.to(device=device if device is not None else generator.device, dtype=dtype)


def gumbel_argmax(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return one exact sample of Categorical(softmax(logits)) per row of the last dim: [..., K] -> [...]."""
    g = gumbel(tuple(logits.shape), generator, device=logits.device, dtype=torch.float64)
    return (logits.double() + g).argmax(dim=-1)


def truncated_gumbel(mu: torch.Tensor, bound: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return Gumbel(mu) draws conditioned to be <= bound (Maddison et al. 2014), in float64.

    TG(mu, b) = -logaddexp(-b, -G) with G ~ Gumbel(mu); `bound` broadcasts against `mu`. Computed in
    place on the draw (these are the same operations, so the same bits, as out of place, at a fraction
    of the memory traffic: LAI runs this on [B, D, K] at every step of a store="none" edit).
    """
    g = gumbel(tuple(mu.shape), generator, device=mu.device, dtype=torch.float64).add_(mu.double())
    return torch.logaddexp(-bound.double(), g.neg_(), out=g).neg_()
