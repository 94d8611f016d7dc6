"""Model predictions as log-probabilities, with classifier-free guidance and temperature (SPEC §2.5)."""

from __future__ import annotations

from typing import Any

import torch

from . import conditions
from .checks import check_number
from .transitions import LOG_FLOOR
from ..errors import DiceError

Temperature = float | tuple[float, float]  # a number, or a (start, end) schedule over the steps

# below float32's smallest normal number 1 / temperature overflows: unusable. Larger ones can still overflow
# large logits; predict_log_probs checks what it computes.
MIN_TEMPERATURE = float(torch.finfo(torch.float32).tiny)


def check_guidance(cfg_scale: float | None, temperature: Temperature) -> tuple[float | None, Temperature]:
    """Return (cfg_scale, temperature) as Python floats (a temperature schedule as a (start, end) tuple) after
    checking cfg_scale is None or a finite number and each temperature a finite number >= MIN_TEMPERATURE."""
    if cfg_scale is not None:
        cfg_scale = check_number("cfg_scale", cfg_scale, "None or a finite number")
    allowed = f"a finite number >= {MIN_TEMPERATURE:.2g} (> 0, and 1 / temperature must not overflow float32)"
    if isinstance(temperature, (tuple, list)):
        if len(temperature) != 2:
            raise DiceError(f"temperature must be a number or a (start, end) pair of numbers, got {temperature!r}")
        return cfg_scale, tuple(check_number("temperature", v, allowed, lambda v: v >= MIN_TEMPERATURE) for v in temperature)
    return cfg_scale, check_number("temperature", temperature, allowed, lambda v: v >= MIN_TEMPERATURE)


def temperature_at(temperature: Temperature, i: int, n: int) -> float:
    """Return the temperature of step index i of n (0: least noisy): a number, or a (start, end) schedule
    moved linearly from `start` at the least noisy step to `end` at the noisiest (the DICE authors run
    Paella with 0.2 -> 1.2 over inversion, so 1.2 -> 0.2 over editing). Inversion and editing read the
    same value at the same step, so reconstruction stays exact."""
    if not isinstance(temperature, (tuple, list)):
        return temperature
    start, end = temperature
    return start + (end - start) * (i / (n - 1) if n > 1 else 1.0)


def guidance_weight(cfg_scale: float | None) -> float | None:
    """Return the guidance weight w that needs an unconditional pass: None for no guidance and for w = 1,
    which is plain conditioning (u + 1 (c - u) = c), so that 1.0 and None give bit-identical log-probs."""
    return None if cfg_scale is None or float(cfg_scale) == 1.0 else float(cfg_scale)


def predict_log_probs(model: Any, groups: list[tuple[torch.Tensor, torch.Tensor, Any]],
                      cfg_scale: float | None, temperature: float) -> list[torch.Tensor]:
    """Return guided log-probs [B_g, D, K] for each (x [B_g, D], t [B_g], cond) group, from one forward pass.

    Batching the groups (editing rows, recomputed inversion rows, and their unconditional twins
    under guidance) keeps store="none" at one model call per step. Temperature divides the logits;
    guidance mixes log-probs, u + w (c - u), and renormalises; everything is floored at LOG_FLOOR.
    Raises a DiceError if the model's logits, or the log-probs after temperature and guidance (what
    inversion and editing use), hold NaN or inf.
    """
    rows = [x.shape[0] for x, _, _ in groups]
    x = torch.cat([g[0] for g in groups])
    t = torch.cat([g[1] for g in groups])
    cond = conditions.concat([g[2] for g in groups])
    w = guidance_weight(cfg_scale)
    if w is not None:
        cond = conditions.concat([cond, conditions.null_like(model, x.shape[0])])
        x, t = torch.cat([x, x]), torch.cat([t, t])
    logits = model.logits(x, t, cond)
    k = model.num_classes
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (x.shape[0], x.shape[1], k):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise DiceError(f"{type(model).__name__}.logits returned {shape}; expected [B, D, K] = "
                        f"{[x.shape[0], x.shape[1], k]} (does the model match the inversion's K and D?)")
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    if w is not None:
        c, u = logp.chunk(2)
        logp = torch.log_softmax(u + w * (c - u), dim=-1)
    logp = logp.clamp(min=LOG_FLOOR)  # -inf (a log-prob below float32's range) is the floor; NaN and +inf stay
    logits_ok, logp_ok = torch.stack([torch.isfinite(logits).all(), torch.isfinite(logp).all()]).tolist()  # one sync
    if not logits_ok:
        raise DiceError(f"{type(model).__name__}.logits returned NaN or inf values")
    if not logp_ok:
        raise DiceError(f"the log-probs became non-finite (NaN or inf) with cfg_scale={cfg_scale}, temperature={temperature}: "
                        "logits / temperature or the guidance mix overflows float32; "
                        "use a smaller cfg_scale or a larger temperature")
    return list(logp.split(rows))


def levels_for(x: torch.Tensor, level: float) -> torch.Tensor:
    """Return the noise level `level` repeated for each row of x: [B] float32 on x's device."""
    return torch.full((x.shape[0],), float(level), dtype=torch.float32, device=x.device)
