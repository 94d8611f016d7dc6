"""The checks behind every setting of inversion and editing and every field of a saved inversion:
numbers, tensors and the range of their values. Each raises a DiceError naming the value and what is allowed."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..errors import DiceError, is_int, is_number


def check_number(name: str, value: Any, allowed: str = "a finite number", ok: Callable[[Any], bool] | None = None,
                 integer: bool = False) -> Any:
    """Return `value` as a Python int (integer=True) or float if it is a finite number passing `ok`.

    Otherwise raise a DiceError "{name} must be {allowed}, got {value!r}". numpy scalars count as numbers
    (np.int64 steps, np.float32 scales); bools do not, although Python makes them ints.
    """
    if is_int(value) if integer else is_number(value):
        v = int(value) if integer else float(value)
        if ok is None or ok(v):
            return v
    raise DiceError(f"{name} must be {allowed}, got {value!r}")


def check_tensor(name: str, value: Any, shape: tuple[int | None, ...], dims: str, *dtypes: torch.dtype) -> torch.Tensor:
    """Return `value` if it is a non-empty tensor of one of `dtypes` and of `shape` (None: any size), else raise a DiceError."""
    if not (isinstance(value, torch.Tensor) and value.dtype in dtypes and value.dim() == len(shape) and value.numel() > 0
            and all(s is None or s == g for s, g in zip(shape, value.shape))):
        got = f"a {value.dtype} tensor {list(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)[:80]
        kinds = " or ".join(map(str, dtypes))
        raise DiceError(f"{name} must be a {dims} {kinds} tensor, got {got}".replace("torch.", ""))
    return value


def check_range(name: str, value: torch.Tensor, lo: float, hi: float, allowed: str) -> None:
    """Return None if every entry of `value` is finite and within [lo, hi] (one min/max pass, no copy), else raise a DiceError."""
    mn, mx = (float(v) for v in torch.aminmax(value))
    if not (math.isfinite(mn) and math.isfinite(mx) and lo <= mn and mx <= hi):  # NaN anywhere makes both NaN
        raise DiceError(f"{name} holds values in [{mn:g}, {mx:g}]; expected {allowed}")
