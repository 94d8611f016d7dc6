"""Model predictions as log-probabilities, with classifier-free guidance and temperature (SPEC §2.5)."""

from __future__ import annotations

from typing import Any

import torch

from . import conditions
from .transitions import LOG_FLOOR
from ..errors import DiceError


def check_guidance(cfg_scale: float | None, temperature: float) -> None:
    """Raise a DiceError unless cfg_scale is None or a finite number and temperature > 0."""
    if cfg_scale is not None and (isinstance(cfg_scale, bool) or not isinstance(cfg_scale, (int, float))
                                  or not torch.isfinite(torch.tensor(float(cfg_scale)))):
        raise DiceError(f"cfg_scale must be None or a finite number, got {cfg_scale!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise DiceError(f"temperature must be a number > 0, got {temperature!r}")


def predict_log_probs(model: Any, groups: list[tuple[torch.Tensor, torch.Tensor, Any]],
                      cfg_scale: float | None, temperature: float) -> list[torch.Tensor]:
    """Return guided log-probs [B_g, D, K] for each (x [B_g, D], t [B_g], cond) group, from one forward pass.

    Batching the groups (editing rows, recomputed inversion rows, and their unconditional twins
    under guidance) keeps store="none" at one model call per step. Temperature divides the logits;
    guidance mixes log-probs, u + w (c - u), and renormalises; everything is floored at LOG_FLOOR.
    """
    rows = [x.shape[0] for x, _, _ in groups]
    x = torch.cat([g[0] for g in groups])
    t = torch.cat([g[1] for g in groups])
    cond = conditions.concat([g[2] for g in groups])
    if cfg_scale is not None:
        cond = conditions.concat([cond, conditions.null_like(model, x.shape[0])])
        x, t = torch.cat([x, x]), torch.cat([t, t])
    logits = model.logits(x, t, cond)
    k = model.num_classes
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (x.shape[0], x.shape[1], k):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise DiceError(f"{type(model).__name__}.logits returned {shape}; expected [B, D, K] = "
                        f"{[x.shape[0], x.shape[1], k]} (does the model match the inversion's K and D?)")
    if not bool(torch.isfinite(logits).all()):
        raise DiceError(f"{type(model).__name__}.logits returned NaN or inf values")
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    if cfg_scale is not None:
        c, u = logp.chunk(2)
        logp = torch.log_softmax(u + cfg_scale * (c - u), dim=-1)
    return list(logp.clamp(min=LOG_FLOOR).split(rows))


def levels_for(x: torch.Tensor, level: float) -> torch.Tensor:
    """Return the noise level `level` repeated for each row of x: [B] float32 on x's device."""
    return torch.full((x.shape[0],), float(level), dtype=torch.float32, device=x.device)
