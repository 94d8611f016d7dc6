"""Return `shapes-oracle` as a next-scale image model: image -> pyramid maps -> (invert, edit) -> finest map -> image.

The NextScaleDenoiser is `shapes_oracle_next_scale.ShapesNextScaleOracle`; image I/O is the masked
shapes models' (`ShapesImageModel`: nearest palette colour after a centre crop and nearest resize),
followed by the pyramid (`shapes_pyramid`). `decode` renders the finest map, which is the image, so
decode(encode_image(render)) is exact.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import DiceError
from .shapes_image_model import ShapesImageModel
from .shapes_oracle_next_scale import ShapesNextScaleOracle


class ShapesNextScaleImageModel:
    """A NextScaleDenoiser plus encode_image (-> maps) / decode (maps -> images) / encode_prompt, for the CLI."""

    method = "next_scale"
    default_cfg = None  # exact posteriors: guidance only sharpens them

    def __init__(self, oracle: ShapesNextScaleOracle | None = None, name: str = "shapes-oracle") -> None:
        self.denoiser = oracle or ShapesNextScaleOracle()
        self.io = ShapesImageModel(self.denoiser.masked, name=name)  # palette I/O and word ids
        self.name = name
        self.num_classes = self.denoiser.num_classes
        self.scales = self.denoiser.scales
        self.image_size = self.io.image_size

    device = torch.device("cpu")

    @property
    def null_cond(self) -> torch.Tensor:
        return self.denoiser.null_cond

    def scale_logits(self, prefix: list[torch.Tensor], cond: Any) -> torch.Tensor:
        """Return log p(map_k | maps_<k, cond) [B, h_k * w_k, K] (the oracle's)."""
        return self.denoiser.scale_logits(prefix, cond)

    def encode_prompt(self, prompts: str | list[str]) -> torch.Tensor:
        """Return word ids [B, L] (the shapes vocabulary)."""
        return self.io.encode_prompt(prompts)

    def encode_image(self, images: Any) -> list[torch.Tensor]:
        """Return the pyramid maps [B, h_k * w_k] of images (paths, PIL images or tensors), coarse to fine."""
        return self.denoiser.pyramid(self.io.encode_image(images))

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Return palette images [B, 3, S, S] in [0, 1] of the finest map of `maps`."""
        if not isinstance(maps, (list, tuple)) or len(maps) != len(self.scales):
            raise DiceError(f"decode takes the list of {len(self.scales)} maps of a pyramid, got {type(maps).__name__}")
        return self.io.decode(maps[-1])
