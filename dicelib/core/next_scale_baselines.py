"""VARIN's baselines as calls of their own: Regeneration (Alg. 4) and target-only VARIN (Alg. 6) (SPEC §2.8).

Regeneration keeps the first `start_scale` source maps and samples the rest under the target: what
`edit` with lambda1 = 0, lambda2 = 1 does, without an inversion (the same sampler, so the two agree
token for token under one generator). Target-only VARIN inverts under the target condition and edits
under it. lambda1 = 0 with other lambda2 is just an edit setting.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from . import conditions
from ..errors import DiceError, check_choice
from .api import _generator, edit, invert
from .checks import check_number
from .guidance import Temperature, check_guidance
from .inversion import CFG_SCHEDULES
from .next_scale import _Run, check_cond, check_maps, sample_scales
from .protocol import check_next_scale_model, model_device
from .schedules import LambdaSchedule
from .settings import EDIT, INVERT


def regenerate_next_scale(model: Any, x0_maps: Sequence[torch.Tensor], cond: Any, start_scale: int,
                          cfg_scale: float | None = INVERT.cfg_scale, temperature: Temperature = INVERT.temperature,
                          cfg_schedule: str = INVERT.cfg_schedule, generator: torch.Generator | None = None,
                          max_batch: int | None = None, progress: bool = False) -> list[torch.Tensor]:
    """Return S maps [B, h_k * w_k]: the first `start_scale` of x0_maps, the rest sampled under `cond`
    (VARIN Alg. 4, r_k = argmax(log p(. | r_<k, c') + g_k), guided and tempered as in `invert`)."""
    k, scales = check_next_scale_model(model)
    maps = check_maps(x0_maps, scales, k, "x0_maps")
    num = len(scales)
    start = check_number("start_scale", start_scale, f"an int in 0..{num - 1} (the first regenerated of the model's "
                         f"S = {num} scales)", lambda v: 0 <= v < num, integer=True)
    cfg_scale, temperature = check_guidance(cfg_scale, temperature)
    check_choice("cfg_schedule", cfg_schedule, CFG_SCHEDULES)
    check_cond(cond, maps[0].shape[0])
    device = model_device(model)
    maps, cond = [m.to(device) for m in maps], conditions.to_device(cond, device)
    edited = num - start
    run = _Run(cond, cfg_scale, cfg_schedule, temperature, start, [0.0] * edited, [1.0] * edited, "add", _generator(generator))
    return sample_scales(model, maps, [run], [h * w for h, w in scales], None, None, max_batch, progress)[0]


def target_only_edit(model: Any, x0_maps: Sequence[torch.Tensor], cond: Any, lambda1: float = EDIT.lambda1,
                     lambda2: float | None = EDIT.lambda2, start_scale: int = EDIT.start_scale,
                     injection: str = EDIT.injection, lambda_schedule: str | LambdaSchedule = EDIT.lambda_schedule,
                     lambda1_end: float = EDIT.lambda1_end, generator: torch.Generator | None = None,
                     progress: bool = False, **invert_kwargs: Any) -> list[torch.Tensor]:
    """Return S edited maps [B, h_k * w_k]: VARIN Alg. 6, the latents extracted under the target condition
    `cond` itself (no source prompt), then edited under it. invert_kwargs: `invert`'s (pseudo_inverse,
    cfg_scale, temperature, store, margin, cfg_schedule); the edit keeps their guidance and temperature.
    One generator serves both: the inversion's LAI seed, then the edit's Gumbel draws."""
    method = invert_kwargs.pop("method", "next_scale")
    if method != "next_scale":
        raise DiceError(f"target_only_edit runs method 'next_scale' (VARIN Alg. 6), got method {method!r}")
    gen = _generator(generator)
    inv = invert(model, x0_maps, cond, method="next_scale", generator=gen, progress=progress, **invert_kwargs)
    return edit(model, inv, cond, lambda1=lambda1, lambda2=lambda2, injection=injection, lambda_schedule=lambda_schedule,
                lambda1_end=lambda1_end, start_scale=start_scale, generator=gen, progress=progress)
