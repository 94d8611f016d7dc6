"""Batching of model conditions.

A condition is whatever a model understands, one entry per batch row. dicelib only needs to
stack conditions (to batch guidance and store="none" recomputation into one forward pass) and
to repeat a model's single-row `null_cond`. Supported containers: a Tensor [B, ...], a list or
tuple of length B, a dict of those (batched key by key), or None (an unconditional model).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import DiceError

Cond = Any


def batch_size(cond: Cond) -> int | None:
    """Return the number of rows in `cond`, or None when it carries no batch (None)."""
    if cond is None:
        return None
    if isinstance(cond, torch.Tensor):
        if cond.dim() == 0:
            raise DiceError("a tensor condition needs a batch dimension; got a 0-d tensor")
        return cond.shape[0]
    if isinstance(cond, (list, tuple)):
        return len(cond)
    if isinstance(cond, dict):
        sizes = {batch_size(v) for v in cond.values()} - {None}
        if len(sizes) > 1:
            raise DiceError(f"condition dict has entries of different batch sizes {sorted(sizes)}")
        return sizes.pop() if sizes else None
    raise DiceError(
        f"unsupported condition type {type(cond).__name__}; use a Tensor [B, ...], a list, a tuple, a dict or None"
    )


def concat(conds: list[Cond]) -> Cond:
    """Return the row-wise concatenation of conditions of the same kind."""
    first = conds[0]
    if first is None:
        if any(c is not None for c in conds):
            raise DiceError("cannot batch None with a non-None condition")
        return None
    if isinstance(first, torch.Tensor):
        return torch.cat([c.to(first.device) for c in conds], dim=0)
    if isinstance(first, (list, tuple)):
        out = [item for c in conds for item in c]
        return out if isinstance(first, list) else tuple(out)
    if isinstance(first, dict):
        return {k: concat([c[k] for c in conds]) for k in first}
    raise DiceError(f"unsupported condition type {type(first).__name__}")


def repeat(cond: Cond, n: int) -> Cond:
    """Return a single-row condition repeated to n rows."""
    if cond is None:
        return None
    if isinstance(cond, torch.Tensor):
        return cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond
    if isinstance(cond, (list, tuple)):
        out = list(cond) * n if len(cond) == 1 else list(cond)
        return out if isinstance(cond, list) else tuple(out)
    if isinstance(cond, dict):
        return {k: repeat(v, n) for k, v in cond.items()}
    raise DiceError(f"unsupported condition type {type(cond).__name__}")


def null_like(model: Any, n: int) -> Cond:
    """Return the model's unconditional condition for n rows (`null_cond` may be callable)."""
    if not hasattr(model, "null_cond"):
        raise DiceError(f"{type(model).__name__} has no `null_cond`, so classifier-free guidance is impossible")
    null = model.null_cond
    return null(n) if callable(null) else repeat(null, n)


def to_device(cond: Cond, device: torch.device) -> Cond:
    """Return `cond` with every tensor moved to `device`."""
    if isinstance(cond, torch.Tensor):
        return cond.to(device)
    if isinstance(cond, dict):
        return {k: to_device(v, device) for k, v in cond.items()}
    return cond


def check_rows(cond: Cond, rows: int, what: str = "cond") -> None:
    """Raise a DiceError unless `cond` has `rows` rows (None always passes)."""
    n = batch_size(cond)
    if n is not None and n != rows:
        raise DiceError(f"{what} has {n} rows but x0 has {rows}; give one condition per batch row")
