"""Return the embedded `shapes` denoiser with image I/O (palette RGB <-> pixel tokens), as the CLI needs it.

ShapesBench images are 16x16 pixels of K = 8 palette colours and the pixels are the tokens, so
encoding an image is a nearest-palette-colour lookup (after a centre crop to a square and a
nearest-neighbour resize, which keeps the palette, for an image of another size) and decoding is the palette itself: decode(encode(render)) is exact. The network
(dicelib.shapes_model) serves both methods; the CLI defaults to the masked one with [MASK] noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import DiceError, MissingWeightsError


class ShapesImageModel:
    """The shapes DiscreteDenoiser plus encode_image / decode / encode_prompt."""

    method = "masked"
    noise = "mask"
    default_cfg = 3.0

    def __init__(self, denoiser: Any, name: str = "shapes") -> None:
        from . import shapesbench as sb

        self.denoiser = denoiser
        self.name = name
        self.num_classes = denoiser.num_classes
        self.mask_id = denoiser.mask_id
        self.num_positions = denoiser.num_positions
        self.transition_schedule = denoiser.transition_schedule
        self.image_size = int(round(self.num_positions ** 0.5))
        self._palette = torch.as_tensor(sb.PALETTE, dtype=torch.float32)[: self.num_classes]  # [K, 3]

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def null_cond(self) -> torch.Tensor:
        return self.denoiser.null_cond

    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Return the denoiser's x0 logits [B, D, K]."""
        return self.denoiser.logits(x, t, cond)

    def encode_prompt(self, prompts: str | list[str]) -> torch.Tensor:
        """Return word ids [B, L] (the shapes vocabulary; unknown words raise a DiceError)."""
        from .shapes_model import encode

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return encode(prompts, self.denoiser.config.prompt_len).to(self.device)

    def encode_image(self, images: Any) -> torch.Tensor:
        """Return colour ids x0 [B, D]: each pixel's nearest palette colour at image_size x image_size."""
        from ..adapters.vq_codec import to_image_tensor

        items = images if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise DiceError("no images given")
        rows = [self._tokens(img) for item in items for img in to_image_tensor(item)]  # any size: _tokens resizes
        return torch.stack(rows).to(self.device)

    def _tokens(self, image: torch.Tensor) -> torch.Tensor:
        """Return the nearest palette ids [D] of one image [3, H, W] in [0, 1], centre-cropped to a square
        (never squashed) and resized (nearest) to image_size x image_size when it is another size."""
        _, h, w = image.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2  # the crop vq_codec uses for the other models
        image = image[:, top:top + side, left:left + side]
        if side != self.image_size:
            image = torch.nn.functional.interpolate(image[None].float(), size=(self.image_size,) * 2, mode="nearest")[0]
        rgb = image.float().permute(1, 2, 0).reshape(-1, 1, 3) * 255  # [D, 1, 3]
        return ((rgb - self._palette) ** 2).sum(-1).argmin(-1)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Return palette images [B, 3, S, S] in [0, 1] of colour ids x [B, D] (no [MASK])."""
        if bool((x < 0).any()) or bool((x >= self.num_classes).any()):
            raise DiceError(f"cannot decode: colour ids must be in 0..{self.num_classes - 1} (no [MASK])")
        s = self.image_size
        return (self._palette[x.cpu()] / 255.0).reshape(x.shape[0], s, s, 3).permute(0, 3, 1, 2)


def load_shapes_image_model(path: str | Path | None = None, device: str | torch.device | None = None) -> ShapesImageModel:
    """Return the trained shapes model (models/shapes.pt, or `path`) ready for the CLI; MissingWeightsError if untrained."""
    from . import shapes_model

    path = Path(path) if path is not None else shapes_model.CHECKPOINT
    if not path.is_file():
        raise MissingWeightsError(f"no shapes checkpoint at {path}; train it with `dvc repro` "
                                  "(stage train-shapes, or `python -m dicelib.image.train_shapes`)")
    return ShapesImageModel(shapes_model.load(path, device=device or "cpu"), name=str(path))
