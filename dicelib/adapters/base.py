"""Return the shared part of the VQ image adapters (aMUSEd, VQ-Diffusion) as one base class.

Both wrap a diffusers pipeline's parts: a VQ autoencoder (image <-> token map [B, h*w]), a
transformer over that token map and a CLIP text encoder with its tokenizer. `VQImageAdapter` holds
what does not depend on the model: placing the parts, tokenizing prompts, the cached unconditional
condition, VQ encoding/decoding with id checks, and assembling the parts from diffusers' component
names, in memory (`from_components(**pipe.components)`) or from a snapshot's subfolders
(`from_pretrained`). Subclasses add the logits, the condition format and their checks.
"""

from __future__ import annotations

import importlib
import inspect
from functools import cached_property
from pathlib import Path
from typing import Any, Self

import torch

from ..errors import DiceError
from .hub import default_device, load_component, place, resolve_snapshot
from .vq_codec import to_image_tensor, vq_decode, vq_encode


class VQImageAdapter:
    """Base of the DiscreteDenoisers over VQ token maps x [B, D] (D = h*w, row-major) of images."""

    repo_id: str  # the default checkpoint of from_pretrained
    # subfolder of a snapshot (= diffusers' component name) -> "module:Class" loading it; imported
    # only in from_pretrained so that importing an adapter stays cheap
    subfolders: dict[str, str] = {}
    # diffusers' component name -> constructor argument, where the two differ
    aliases: dict[str, str] = {}
    signed_pixels = False  # the VQ works on pixels in [-1, 1] (else [0, 1])
    cond_format = "embeddings"  # what encode_prompt returns, for the no-text-encoder error
    # set by subclasses: K codebook ids, the token grid (h, w) and the image side in pixels
    num_classes: int
    grid: tuple[int, int]
    image_size: int

    def __init__(self, vqvae: Any, transformer: Any, text_encoder: Any = None, tokenizer: Any = None,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                 name: str = "vq-image") -> None:
        self.name = name
        self.device = default_device(device)
        self.vqvae = place(vqvae, self.device, torch.float32)  # float16 VQ decoding gives NaNs
        self.transformer = place(transformer, self.device, dtype)
        self.text_encoder = place(text_encoder, self.device, dtype) if text_encoder is not None else None
        self.tokenizer = tokenizer

    @classmethod
    def from_components(cls, **components: Any) -> Self:
        """Return an adapter around in-memory components, named as the constructor's or diffusers' `pipe.components`."""
        accepted = list(inspect.signature(cls).parameters)
        kwargs: dict[str, Any] = {}
        for key, value in components.items():
            arg = cls.aliases.get(key, key)
            if arg not in accepted:
                known = ", ".join(sorted({*accepted, *cls.aliases}))
                raise DiceError(f"{cls.__name__} has no component {key!r}; accepted: {known}")
            if arg in kwargs:
                raise DiceError(f"{cls.__name__} got {arg!r} twice (once as {key!r})")
            kwargs[arg] = value
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, repo_id: str | Path | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> Self:
        """Return the adapter for a checkpoint (default `repo_id`) in the local HF cache or a folder.

        Absent or broken weights raise MissingWeightsError (never a download). Each subfolder is
        loaded with its own class from `subfolders`, not through the diffusers pipeline: diffusers
        0.42.1's VQDiffusionPipeline.from_pretrained cannot resolve its learned-embeddings class.
        """
        repo_id = cls.repo_id if repo_id is None else repo_id
        repo, root = str(repo_id), resolve_snapshot(repo_id)
        parts = {}
        for sub, target in cls.subfolders.items():
            module, attr = target.split(":")
            parts[sub] = load_component(getattr(importlib.import_module(module), attr), root, sub, repo)
        return cls.from_components(**parts, device=device, dtype=dtype, name=repo)

    # --- conditions -------------------------------------------------------------------------
    def tokenize(self, prompts: str | list[str]) -> torch.Tensor:
        """Return token ids [B, L] on the device, padded/truncated to the tokenizer's max length as the pipelines do."""
        if self.text_encoder is None or self.tokenizer is None:
            raise DiceError(f"{self.name} was built without a text encoder/tokenizer; pass {self.cond_format}")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    def encode_prompt(self, prompts: str | list[str]) -> Any:
        """Return the conditions for `prompts`, one row each (subclasses)."""
        raise NotImplementedError

    @cached_property
    def null_cond(self) -> Any:
        """Return the unconditional condition (one row), computed once by `null_condition`."""
        return self.null_condition()

    def null_condition(self) -> Any:
        """Return the empty prompt's encoding: the default unconditional condition (subclasses may override)."""
        return self.encode_prompt([""])

    def token_map(self, x: torch.Tensor) -> torch.Tensor:
        """Return token ids x [B, D] as the map [B, h, w] (long, on the device); another D -> DiceError."""
        x = x.to(self.device).long()
        h, w = self.grid
        if x.dim() != 2 or x.shape[1] != h * w:
            raise DiceError(f"x must be token ids [B, D] with D = {h}x{w} = {h * w} positions for {self.name}; "
                            f"got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], h, w)

    # --- images -----------------------------------------------------------------------------
    def encode_image(self, images: Any) -> torch.Tensor:
        """Return codebook ids x0 [B, D] (D = h*w, row-major) of images resized to `image_size`."""
        pixels = to_image_tensor(images, self.image_size)  # [B, 3, H, W] in [0, 1]
        tokens, grid = vq_encode(self.vqvae, pixels * 2 - 1 if self.signed_pixels else pixels)
        if grid != self.grid:
            raise DiceError(f"VQ gives a {grid} token grid but the transformer expects {self.grid}")
        return tokens

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Return images [B, 3, H, W] in [0, 1] for codebook ids x [B, D] (no [MASK] allowed)."""
        if bool((x >= self.num_classes).any()) or bool((x < 0).any()):
            raise DiceError(f"cannot decode: token ids must be in 0..{self.num_classes - 1} (no [MASK])")
        pixels = vq_decode(self.vqvae, x, self.grid)
        return (pixels / 2 + 0.5 if self.signed_pixels else pixels).clamp(0, 1)
