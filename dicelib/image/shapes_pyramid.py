"""Return the next-scale pyramid of ShapesBench palette images: token maps at sides 1, 2, 4, 8, 12, 14, 15, 16.

The rule (deterministic, stated once here): an n x n palette image (n a power of two) has the
sides s = 1, 2, 4, ..., n / 2 (the powers of two below n), then n - n/4, n - n/8, ..., n - 1, and
n; for n = 16: 1, 2, 4, 8, 12, 14, 15, 16. Token (i, j) of the map of side s is the most frequent
colour of its window, rows floor(i n / s) .. ceil((i + 1) n / s) - 1 and the same columns, ties
going to the lower colour id. For the powers of two the windows are the disjoint (n / s)-pixel
blocks; for the other sides they are 2 x 2 windows that overlap their neighbours by a row or a
column where n / s is not a whole number, so the last maps pin an object's edges to the pixel.
The finest map is the image itself (1 x 1 windows), so `finest(pyramid(x))` is x. Maps are
row-major flattened, [B, s * s], as a next-scale model's `scale_logits` takes them.

Why the sides after n / 2: with 1, 2, 4, 8, 16 alone, the 8 x 8 map leaves an object's position
open by a pixel, every token of the 16 x 16 map is drawn on its own from a mixture of positions,
and edits come out jagged (measured in docs/next-scale.md). On ShapesBench the 1 x 1 map is always
the background (objects cover at most 98 of 256 pixels), and no window has a three-way tie
(window areas are powers of two or 4, never multiples of three).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DiceError
from . import shapesbench as sb


def scale_sides(size: int = sb.SIZE) -> tuple[int, ...]:
    """Return the map sides of an n x n image's pyramid: (1, 2, ..., n/2, n - n/4, ..., n - 1, n); DiceError unless
    n is a power of two."""
    if size < 1 or size & (size - 1):
        raise DiceError(f"the pyramid needs an image side that is a power of two, got {size!r}")
    halves = [2 ** i for i in range(size.bit_length() - 1)]  # 1, 2, ..., n / 2
    return tuple(halves + [size - d for d in reversed(halves[:-1])] + [size])


def scales(size: int = sb.SIZE) -> list[tuple[int, int]]:
    """Return the (h, w) of every scale, coarse to fine, as NextScaleDenoiser.scales."""
    return [(s, s) for s in scale_sides(size)]


def windows(size: int, side: int) -> list[tuple[int, int]]:
    """Return the pixel range [lo, hi) of each of the `side` windows along one axis of an n-pixel image."""
    return [(i * size // side, -(-(i + 1) * size // side)) for i in range(side)]


def window_matrix(size: int, side: int) -> torch.Tensor:
    """Return the 0/1 matrix [side, n] (float32) whose row i marks the pixels of window i along one axis."""
    m = torch.zeros(side, size)
    for i, (lo, hi) in enumerate(windows(size, side)):
        m[i, lo:hi] = 1
    return m


def window_sums(x: np.ndarray | torch.Tensor, side: int) -> torch.Tensor:
    """Return the sums of x [B, n, n] (counts) over every window of the map of side `side`: [B, side, side] int64."""
    x = torch.as_tensor(x, dtype=torch.float32)
    w = window_matrix(x.shape[-1], side)
    return (w @ x @ w.T).round().long()  # whole counts below 2^24: float32 sums them exactly


def block_mode(tokens: np.ndarray, side: int, num_classes: int) -> np.ndarray:
    """Return each window's most frequent colour (ties: lower id) of images [B, n, n]: [B, side, side] int64."""
    return _modes(np.asarray(tokens), (side,), num_classes)[0].numpy()


def _modes(tokens: np.ndarray, sides: tuple[int, ...], num_classes: int) -> list[torch.Tensor]:
    """Return each window's most frequent colour per side (ties: lower id): [B, s, s] int64 for each s in `sides`.

    Every window of a side has the same width L here (n / s for powers of two, 2 for the others), so the
    mode of every L x L window at every offset is taken once per L (summed-area table, one argmax) and each
    side picks its windows' offsets from it."""
    x = torch.from_numpy(tokens)
    b, n = x.shape[0], x.shape[-1]
    cum = torch.zeros(b, n + 1, n + 1, num_classes, dtype=torch.int32)
    cum[:, 1:, 1:] = torch.nn.functional.one_hot(x, num_classes).to(torch.int32).cumsum(1).cumsum(2)
    by_width: dict[int, torch.Tensor] = {}
    out = []
    for s in sides:
        lo, hi = (torch.tensor(v) for v in zip(*windows(n, s)))
        width = int(hi[0] - lo[0])
        if not bool((hi - lo == width).all()):
            raise DiceError(f"side {s} of an {n}-pixel image has windows of unequal widths {(hi - lo).tolist()}")
        if width not in by_width:  # modes of every width x width window [B, n - w + 1, n - w + 1]
            L = width
            counts = cum[:, L:, L:] - cum[:, :-L, L:] - cum[:, L:, :-L] + cum[:, :-L, :-L]
            by_width[width] = counts.argmax(-1)  # torch's argmax takes the first maximum: the lower colour id
        out.append(by_width[width][:, lo][:, :, lo])
    return out


def pyramid(tokens, size: int = sb.SIZE, num_classes: int = sb.NUM_CLASSES) -> list[torch.Tensor]:
    """Return the token maps [B, s * s] (int64) of images [B, n * n] or [B, n, n], coarse to fine; the last is the image."""
    x = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens).astype(np.int64)
    if x.ndim == 2 and x.shape[1] == size * size:
        x = x.reshape(-1, size, size)
    if x.ndim != 3 or x.shape[1:] != (size, size):
        raise DiceError(f"the pyramid takes images [B, {size * size}] or [B, {size}, {size}], got {list(x.shape)}")
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise DiceError(f"pyramid tokens must be colour ids 0..{num_classes - 1}, got range [{x.min()}, {x.max()}]")
    sides = scale_sides(size)
    return [m.reshape(x.shape[0], s * s) for s, m in zip(sides, _modes(x, sides, num_classes))]


def finest(maps: list[torch.Tensor]) -> torch.Tensor:
    """Return the image tokens [B, D] of a pyramid: its finest map."""
    if not maps:
        raise DiceError("an empty list of maps has no finest map")
    return maps[-1]
