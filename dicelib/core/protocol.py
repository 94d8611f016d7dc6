"""The DiscreteDenoiser protocol every model (toy, trained here, or adapted) implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import DiceError


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
    if missing:
        raise DiceError(
            f"{type(model).__name__} is not a DiscreteDenoiser: missing {', '.join(missing)} "
            "(needs num_classes, mask_id, logits(x, t, cond) and null_cond for guidance)"
        )
    k = model.num_classes
    if not isinstance(k, int) or k < 2:
        raise DiceError(f"model.num_classes must be an int >= 2, got {k!r}")
    return k
