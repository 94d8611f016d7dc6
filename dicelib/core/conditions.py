"""Batching of model conditions.

A condition is whatever a model understands, one entry per batch row. dicelib only needs to
stack conditions (to batch guidance and store="none" recomputation into one forward pass) and
to repeat a model's single-row `null_cond`. Supported containers: a Tensor [B, ...], a list or
tuple of length B, a dict of those (batched key by key), or None (an unconditional model). A
single row may also be a 0-d tensor (the null class of a model whose condition is a [B] tensor).
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


def kind(cond: Cond) -> str:
    """Return the container kind of `cond` as batching sees it: None, Tensor, list (or tuple), dict[keys], or its type."""
    if isinstance(cond, dict):
        return f"dict{sorted(cond)}"
    return "list" if isinstance(cond, (list, tuple)) else "Tensor" if isinstance(cond, torch.Tensor) else type(cond).__name__


def concat(conds: list[Cond]) -> Cond:
    """Return the row-wise concatenation of conditions of the same kind."""
    first = conds[0]
    other = next((kind(c) for c in conds if kind(c) != kind(first)), None)
    if other is not None:  # e.g. store="none" batches the edit's condition with the inversion's in one forward pass
        raise DiceError(f"cannot batch a {kind(first)} condition with a {other} condition in one forward pass; "
                        "give the edit's cond in the same form as the inversion's (and as the model's null_cond)")
    if first is None:
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
        if cond.dim() == 0:  # one row given as a scalar: the rows of a [B] condition
            return cond.expand(n)
        return cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond
    if isinstance(cond, (list, tuple)):
        out = list(cond) * n if len(cond) == 1 else list(cond)
        return out if isinstance(cond, list) else tuple(out)
    if isinstance(cond, dict):
        return {k: repeat(v, n) for k, v in cond.items()}
    raise DiceError(f"unsupported condition type {type(cond).__name__}")


def take(cond: Cond, lo: int, hi: int) -> Cond:
    """Return rows lo..hi-1 of `cond` (a view for tensors): how a grid too big for one call is split."""
    if cond is None:
        return None
    if isinstance(cond, (torch.Tensor, list, tuple)):
        return cond[lo:hi]
    if isinstance(cond, dict):
        return {k: take(v, lo, hi) for k, v in cond.items()}
    raise DiceError(f"unsupported condition type {type(cond).__name__}")


def same(a: Cond, b: Cond) -> bool:
    """Return True when conditions a and b hold the same rows: the same object, or equal kind, shapes and values."""
    if a is b:
        return True
    if kind(a) != kind(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and bool(torch.equal(a, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return all(same(a[k], b[k]) for k in a)  # same kind: the same keys
    return bool(a == b)


def null_like(model: Any, n: int) -> Cond:
    """Return the model's unconditional condition for n rows (`null_cond` may be callable)."""
    if not hasattr(model, "null_cond"):
        raise DiceError(f"{type(model).__name__} has no `null_cond`, so classifier-free guidance is impossible")
    null = model.null_cond
    out = null(n) if callable(null) else repeat(null, n)
    if batch_size(out) not in (None, n):
        raise DiceError(f"{type(model).__name__}.null_cond gave {batch_size(out)} rows for {n}; "
                        "give one row (repeated as needed) or a callable n -> n rows")
    return out


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
