"""The protocols models implement: `DiscreteDenoiser` (masked and multinomial methods) and
`NextScaleDenoiser` (the next_scale method), with the checks that tell them apart."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from ..errors import DiceError, is_int


@runtime_checkable
class DiscreteDenoiser(Protocol):
    """A model that predicts x0 logits from a noisy token map.

    num_classes: K, the number of output classes (token ids 0..K-1).
    mask_id: id of the [MASK] input token, or None. Multinomial (mask-and-replace) models take
        inputs in 0..K with the absorbing [MASK] state at index K, so their mask_id is K.
    null_cond: the unconditional condition for guidance: one row (repeated as needed) or a
        callable n -> n rows.
    logits(x [B, D] long, t [B] float in [0, 1], cond) -> [B, D, K] float.
    Optional: `transition_schedule` (a dicelib.transitions.MultinomialSchedule), used by the
        multinomial method instead of the default; `device` (where inputs must live).
    """

    num_classes: int
    mask_id: int | None
    null_cond: Any

    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor: ...


@runtime_checkable
class NextScaleDenoiser(Protocol):
    """A next-scale autoregressive model (VAR, HART, Switti): token maps of growing sizes, coarse to fine.

    num_classes: K, the number of token ids (0..K-1) of every map.
    scales: (h, w) per scale, coarse to fine; S = len(scales). Scale k's map is [B, h_k * w_k], row-major.
    null_cond: the unconditional condition for guidance, as for DiscreteDenoiser.
    scale_logits(prefix, cond) -> [B, h_k * w_k, K] float: the logits of scale k = len(prefix), every token
        of it given the maps of scales 0..k-1 (`prefix`, each [B, h_j * w_j] long) and the condition; for
        k = 0 the prefix is [] and B is the number of rows of `cond`.
    Optional: `device`; image models also `encode_image`, `decode`, `encode_prompt`, `method = "next_scale"`.
    """

    num_classes: int
    scales: Sequence[tuple[int, int]]
    null_cond: Any

    def scale_logits(self, prefix: list[torch.Tensor], cond: Any) -> torch.Tensor: ...


def is_next_scale(model: Any) -> bool:
    """Return True when `model` looks like a NextScaleDenoiser (it has `scale_logits` and `scales`)."""
    return hasattr(model, "scale_logits") and hasattr(model, "scales")


def check_next_scale_model(model: Any) -> tuple[int, list[tuple[int, int]]]:
    """Return (K, scales as a list of (h, w) ints) after checking that `model` follows NextScaleDenoiser."""
    missing = [a for a in ("num_classes", "scales", "scale_logits") if not hasattr(model, a)]
    if missing:
        what = " (it is a DiscreteDenoiser: use method 'masked' or 'multinomial')" if hasattr(model, "logits") else ""
        raise DiceError(f"{type(model).__name__} is not a NextScaleDenoiser, which method 'next_scale' needs: missing "
                        f"{', '.join(missing)} (needs num_classes, scales [(h, w), ...], scale_logits(prefix, cond) "
                        f"and null_cond for guidance){what}")
    k = model.num_classes
    if not is_int(k) or k < 2:
        raise DiceError(f"model.num_classes must be an int >= 2, got {k!r}")
    scales = model.scales
    ok = isinstance(scales, (list, tuple)) and len(scales) >= 1 and all(
        isinstance(s, (list, tuple)) and len(s) == 2 and all(is_int(v) and v >= 1 for v in s) for s in scales)
    if not ok:
        raise DiceError(f"model.scales must be a non-empty list of (h, w) pairs of ints >= 1, coarse to fine, got {scales!r:.120}")
    return k, [(int(h), int(w)) for h, w in scales]


def model_device(model: Any) -> torch.device:
    """Return the device the model computes on (its `device` attribute or its first parameter)."""
    device = getattr(model, "device", None)
    if device is not None:
        return torch.device(device)
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def check_model(model: Any) -> int:
    """Return K after checking that `model` follows the DiscreteDenoiser protocol."""
    missing = [a for a in ("num_classes", "mask_id", "logits") if not hasattr(model, a)]
    if missing and is_next_scale(model):
        raise DiceError(f"{type(model).__name__} is a NextScaleDenoiser (scales, scale_logits): invert and edit it with "
                        "method='next_scale', not the masked or multinomial method (they need a DiscreteDenoiser)")
    if missing:
        raise DiceError(
            f"{type(model).__name__} is not a DiscreteDenoiser: missing {', '.join(missing)} "
            "(needs num_classes, mask_id, logits(x, t, cond) and null_cond for guidance)"
        )
    k = model.num_classes
    if not isinstance(k, int) or k < 2:
        raise DiceError(f"model.num_classes must be an int >= 2, got {k!r}")
    return k
