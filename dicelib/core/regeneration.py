"""Return images regenerated from noise by the masked process (DICE Alg. 1 without latents).

Three uses share this one sampler, so they run the same process DICE edits with:
- sampling from a prompt (prompt-following check of the trained model);
- the regeneration baseline (every token replaced, nothing kept from the source);
- oracle-mask inpainting (pixels outside a given mask are clamped to the source at every step,
  pixels inside are regenerated).
Each step re-predicts every position, samples x0 ~ D(x_i, s_i, c) (guided, with temperature),
and re-noises with the nested mask of the next level, exactly like `dicelib.edit` with
lambda1 = 0, lambda2 = 1 from a fully noised start.
"""

from __future__ import annotations

from typing import Any

import torch

from . import conditions
from ..errors import DiceError, check_choice
from .guidance import levels_for, predict_log_probs
from .gumbel import gumbel, uniform
from .masked import NOISE_KINDS
from .protocol import check_model, model_device
from .schedules import mask_levels
from .settings import INVERT, MASKED_STEPS


ORDERS = ("resample", "random", "confidence")


@torch.no_grad()
def regenerate(model: Any, cond: Any, steps: int = MASKED_STEPS, cfg_scale: float | None = None,
               temperature: float = INVERT.temperature,
               noise: str = "mask", mask_schedule: str = "cosine", generator: torch.Generator | None = None,
               source: torch.Tensor | None = None, keep: torch.Tensor | None = None,
               num_rows: int | None = None, order: str = "resample") -> torch.Tensor:
    """Return sampled tokens [B, D] under `cond`; with `source` [B, D] and `keep` [B, D] bool,
    positions where `keep` is True are clamped to the source (inpainting of the rest).

    B comes from `cond`, `source` or `num_rows`; D from `source` or the model's `num_positions`.
    order="resample" is Alg. 1: nested random masks, every position re-predicted at every step.
    order="random" is absorbing-diffusion sampling: the same random reveal order, but a revealed
    position keeps its sampled value. order="confidence" is MaskGIT's decoding: revealed
    positions keep their value and each step reveals the still-noised positions whose sampled
    colour is most probable (as many as the schedule says).
    """
    k = check_model(model)
    check_choice("noise kind", noise, NOISE_KINDS)
    check_choice("order", order, ORDERS)
    gen = generator or torch.Generator().manual_seed(0)
    device = model_device(model)
    rows = num_rows or (source.shape[0] if source is not None else conditions.batch_size(cond))
    d = source.shape[1] if source is not None else getattr(model, "num_positions", None)
    if rows is None or d is None:
        raise DiceError("regenerate needs the batch size and length: pass `source` or `num_rows` with a model "
                        "that has `num_positions`")
    if (keep is None) != (source is None):
        raise DiceError("inpainting needs both `source` [B, D] and `keep` [B, D] (bool), or neither")
    cond = conditions.to_device(cond, device)
    if noise == "mask":
        if model.mask_id is None:
            raise DiceError(f"noise='mask' needs a model with a [MASK] token; {type(model).__name__}.mask_id is None")
        noise_map = torch.full((rows, d), int(model.mask_id), dtype=torch.long, device=device)
    else:
        noise_map = torch.randint(k, (rows, d), generator=gen, device=gen.device).to(device)
    u = uniform((rows, d), gen, device=device)
    levels = mask_levels(steps, 1.0, mask_schedule).tolist()
    if keep is not None:
        source, keep = source.to(device).long(), keep.to(device).bool()

    free = torch.ones(rows, d, dtype=torch.bool, device=device) if keep is None else ~keep  # positions to generate

    def state(noised: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        x = torch.where(noised, noise_map, x0)
        return x if keep is None else torch.where(keep, source, x)

    noised = (u < levels[-1]) & free  # [B, D] currently noised
    x = state(noised, noise_map)
    for i in range(steps - 1, -1, -1):
        logp = predict_log_probs(model, [(x, levels_for(x, levels[i]), cond)], cfg_scale, temperature)[0]
        x0 = (logp + gumbel(tuple(logp.shape), gen, device=device)).argmax(-1)
        if order != "resample":
            x0 = torch.where(noised, x0, x)  # revealed positions keep their value
        if order != "confidence":
            noised = (u < levels[i - 1]) & free if i > 0 else torch.zeros_like(free)
            x = state(noised, x0)
            continue
        n_next = (levels[i - 1] * free.sum(1)).round().long() if i > 0 else torch.zeros(rows, dtype=torch.long, device=device)
        conf = torch.where(noised, logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1), float("inf"))  # [B, D]
        rank = conf.argsort(dim=1).argsort(dim=1)  # 0 = least confident
        noised = rank < n_next.view(-1, 1)  # the n_next least confident stay noised (all are still-noised ones)
        x = state(noised, x0)
    return x
