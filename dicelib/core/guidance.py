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


Group = tuple  # (x [B_g, D], t [B_g], cond), or (x, t, cond, cfg_scale, temperature) with its own guidance


def predict_log_probs(model: Any, groups: list[Group], cfg_scale: float | None = None,
                      temperature: float = 1.0) -> list[torch.Tensor]:
    """Return guided log-probs [B_g, D, K] for each (x [B_g, D], t [B_g], cond) group, from one forward pass.

    Batching the groups (editing rows, recomputed inversion rows, and their unconditional twins
    under guidance) keeps store="none" and edit grids at one model call per step. A group may carry
    its own guidance as (x, t, cond, cfg_scale, temperature); 3-tuples use the call's `cfg_scale`
    and `temperature`. The model sees every group's rows in order, then the unconditional twins of
    the guided groups in the same order. Temperature divides the logits; guidance mixes log-probs,
    u + w (c - u), and renormalises; everything is floored at LOG_FLOOR. Each row's log-probs are
    the same whatever else shares the call. Raises a DiceError if the model's logits, or the
    log-probs after temperature and guidance (what inversion and editing use), hold NaN or inf.
    """
    groups = [g if len(g) == 5 else (*g, cfg_scale, temperature) for g in groups]
    guided = [g for g in groups if guidance_weight(g[3]) is not None]
    x = torch.cat([g[0] for g in groups] + [g[0] for g in guided])
    t = torch.cat([g[1] for g in groups] + [g[1] for g in guided])
    cond = conditions.concat([g[2] for g in groups])
    if guided:
        cond = conditions.concat([cond, conditions.null_like(model, sum(g[0].shape[0] for g in guided))])
    logits = model.logits(x, t, cond)
    k = model.num_classes
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (x.shape[0], x.shape[1], k):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise DiceError(f"{type(model).__name__}.logits returned {shape}; expected [B, D, K] = "
                        f"{[x.shape[0], x.shape[1], k]} (does the model match the inversion's K and D?)")
    return mix(model, logits, [(g[0].shape[0], g[3], g[4]) for g in groups])


def mix(model: Any, logits: torch.Tensor, groups: list[tuple[int, float | None, float]]) -> list[torch.Tensor]:
    """Return guided log-probs [B_g, ..., K] per (rows B_g, cfg_scale, temperature) group from one call's logits.

    `logits` holds every group's rows in order, then the unconditional twins of the guided groups in the
    same order (how `predict_log_probs` and the next-scale method batch a call). Temperature divides the
    logits; guidance mixes log-probs, u + w (c - u), and renormalises; everything is floored at LOG_FLOOR.
    Raises a DiceError if the logits or the resulting log-probs hold NaN or inf.
    """
    out, c0 = [], 0
    u0 = sum(n for n, _, _ in groups)
    for n, cfg, temp in groups:  # group by group: a grid's tensors stay small enough for the CPU's caches
        w = guidance_weight(cfg)
        logp = torch.log_softmax(logits[c0:c0 + n].float() / temp, dim=-1)
        if w is not None:
            u = torch.log_softmax(logits[u0:u0 + n].float() / temp, dim=-1)
            logp = torch.log_softmax(u + w * (logp - u), dim=-1)
            u0 += n
        c0 += n
        out.append(logp.clamp(min=LOG_FLOOR))  # -inf (a log-prob below float32's range) is the floor; NaN and +inf stay
    _check_finite(model, logits, out, groups)
    return out


def _check_finite(model: Any, logits: torch.Tensor, logps: list[torch.Tensor], groups: list[tuple]) -> None:
    """Return None if the logits and every group's log-probs are finite, else raise a DiceError naming them.

    A sum is finite only if every entry is (NaN and inf propagate): one reduction per tensor and one
    sync for all; only a non-finite sum (or one that overflowed) pays for the entry-wise check.
    """
    sums = torch.stack([torch.sum(logits, dtype=torch.float32)] + [logp.sum() for logp in logps])
    if all(torch.isfinite(sums).tolist()):
        return
    if not bool(torch.isfinite(logits).all()):
        raise DiceError(f"{type(model).__name__}.logits returned NaN or inf values")
    for logp, (_, cfg_scale, temperature) in zip(logps, groups):
        if not bool(torch.isfinite(logp).all()):
            raise DiceError(f"the log-probs became non-finite (NaN or inf) with cfg_scale={cfg_scale}, "
                            f"temperature={temperature}: logits / temperature or the guidance mix overflows float32; "
                            "use a smaller cfg_scale or a larger temperature")


def levels_for(x: torch.Tensor, level: float) -> torch.Tensor:
    """Return the noise level `level` repeated for each row of x: [B] float32 on x's device."""
    return torch.full((x.shape[0],), float(level), dtype=torch.float32, device=x.device)
