"""Return the next-scale pyramid of ShapesBench palette images: token maps at sides 1, 2, 4, ..., 16.

The rule (deterministic, stated once here): for an n x n palette image (n a power of two) the
pyramid has the scales s = 1, 2, 4, ..., n; map k divides the image into s x s blocks of
(n / s) x (n / s) pixels and each token is its block's most frequent colour, ties going to the
lower colour id. The finest map is the image itself, so `finest(pyramid(x))` is x. Maps are
row-major flattened, [B, s * s], as a next-scale model's `scale_logits` takes them.

On ShapesBench the 1 x 1 map is always the background (objects cover at most 98 of 256 pixels),
and no block has a three-way tie (block sizes are powers of two, never multiples of three).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DiceError
from . import shapesbench as sb


def scale_sides(size: int = sb.SIZE) -> tuple[int, ...]:
    """Return the map sides of an n x n image's pyramid: (1, 2, 4, ..., n); DiceError unless n is a power of two."""
    if size < 1 or size & (size - 1):
        raise DiceError(f"the pyramid needs an image side that is a power of two, got {size!r}")
    return tuple(2 ** i for i in range(size.bit_length()))


def scales(size: int = sb.SIZE) -> list[tuple[int, int]]:
    """Return the (h, w) of every scale, coarse to fine, as NextScaleDenoiser.scales."""
    return [(s, s) for s in scale_sides(size)]


def block_mode(tokens: np.ndarray, side: int, num_classes: int) -> np.ndarray:
    """Return each block's most frequent colour (ties: lower id) of images [B, n, n]: [B, side, side] int64."""
    b, n, _ = tokens.shape
    blk = n // side
    blocks = tokens.reshape(b, side, blk, side, blk).transpose(0, 1, 3, 2, 4).reshape(b, side, side, blk * blk)
    counts = (blocks[..., None] == np.arange(num_classes)).sum(-2)  # [B, side, side, K]
    return counts.argmax(-1).astype(np.int64)  # numpy's argmax takes the first maximum: the lower colour id


def pyramid(tokens, size: int = sb.SIZE, num_classes: int = sb.NUM_CLASSES) -> list[torch.Tensor]:
    """Return the token maps [B, s * s] (int64) of images [B, n * n] or [B, n, n], coarse to fine; the last is the image."""
    x = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens).astype(np.int64)
    if x.ndim == 2 and x.shape[1] == size * size:
        x = x.reshape(-1, size, size)
    if x.ndim != 3 or x.shape[1:] != (size, size):
        raise DiceError(f"the pyramid takes images [B, {size * size}] or [B, {size}, {size}], got {list(x.shape)}")
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise DiceError(f"pyramid tokens must be colour ids 0..{num_classes - 1}, got range [{x.min()}, {x.max()}]")
    return [torch.from_numpy(block_mode(x, s, num_classes).reshape(x.shape[0], s * s)) for s in scale_sides(size)]


def finest(maps: list[torch.Tensor]) -> torch.Tensor:
    """Return the image tokens [B, D] of a pyramid: its finest map."""
    if not maps:
        raise DiceError("an empty list of maps has no finest map")
    return maps[-1]
