"""Return aMUSEd (diffusers) wrapped as a masked-generative DiscreteDenoiser for dicelib.

aMUSEd (a MUSE-style masked image model) predicts raw logits over K codebook ids for a token map
in which masked positions hold the [MASK] id (vocab_size - 1); it has no timestep input, so `t`
is ignored. Invert it with `method="masked", noise="mask"`. Guidance: the pipeline computes
u + w (c - u) on raw logits (default w = 10); dicelib does it on log-probs and renormalises, which
differs from that only by a per-position constant, so the distributions are the same. The
unconditional condition is the encoding of the empty prompt, as the pipeline's negative prompt.
Placing the parts, prompts, VQ coding and loading (also from `pipe.components`) come from
`base.VQImageAdapter`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import DiceError
from .base import VQImageAdapter

REPO_ID = "amused/amused-256"


class Amused(VQImageAdapter):
    """aMUSEd as a DiscreteDenoiser: `logits(x [B, D], t, cond {states, pooled}) -> [B, D, K]`."""

    method = "masked"  # dicelib.invert(..., method=...)
    noise = "mask"  # absorbing [MASK] renoising, as aMUSEd is trained
    default_cfg = 10.0  # the pipeline's guidance scale
    repo_id = REPO_ID
    subfolders = {"vqvae": "diffusers:VQModel", "transformer": "diffusers:UVit2DModel",
                  "text_encoder": "transformers:CLIPTextModelWithProjection", "tokenizer": "transformers:CLIPTokenizer",
                  "scheduler": "diffusers:AmusedScheduler"}
    cond_format = 'embeddings {"states": [B, L, H], "pooled": [B, P]}'

    def __init__(self, vqvae: Any, transformer: Any, text_encoder: Any = None, tokenizer: Any = None,
                 scheduler: Any = None, resolution: int | None = None, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, aesthetic_score: float = 6.0,
                 crop_coord: tuple[int, int] = (0, 0), name: str = "amused") -> None:
        super().__init__(vqvae, transformer, text_encoder, tokenizer, device, dtype, name)
        cfg = transformer.config
        self.num_classes = int(cfg.codebook_size)  # K; the logits have no [MASK] row
        mask = scheduler.config.mask_token_id if scheduler is not None else cfg.vocab_size - 1
        self.mask_id = int(mask)
        if not self.num_classes <= self.mask_id < cfg.vocab_size:
            raise DiceError(f"mask id {self.mask_id} must lie in {self.num_classes}..{cfg.vocab_size - 1}")
        scale = 2 ** (len(vqvae.config.block_out_channels) - 1)
        self.image_size = int(resolution or cfg.sample_size * scale)
        if self.image_size % scale:
            raise DiceError(f"resolution {self.image_size} must be a multiple of the VQ's downscale {scale}")
        self.grid = (self.image_size // scale, self.image_size // scale)  # token map h x w, row-major
        self.num_positions = self.grid[0] * self.grid[1]  # D
        # micro-conditioning as the pipeline: [width, height, crop x, crop y, aesthetic score]
        self._micro = torch.tensor([self.image_size, self.image_size, *crop_coord, aesthetic_score], dtype=torch.float32)

    @torch.no_grad()
    def encode_prompt(self, prompts: str | list[str]) -> dict[str, torch.Tensor]:
        """Return {"states": penultimate CLIP states [B, L, H], "pooled": projected text embeds [B, P]}."""
        out = self.text_encoder(self.tokenize(prompts), return_dict=True, output_hidden_states=True)
        return {"states": out.hidden_states[-2], "pooled": out.text_embeds}

    # --- the protocol -----------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Return raw logits [B, D, K] (float32); `t` is unused (aMUSEd reads the level from the masks)."""
        ids = self.token_map(x)  # [B, h, w]
        rows, positions = x.shape
        if not isinstance(cond, dict) or not {"states", "pooled"} <= set(cond):
            raise DiceError('aMUSEd conditions are dicts {"states": [B, L, H], "pooled": [B, P]} from encode_prompt')
        dtype = self.transformer.dtype
        states, pooled = (cond[k].to(self.device, dtype) for k in ("states", "pooled"))
        if states.shape[0] == 1 and rows > 1:
            states, pooled = states.expand(rows, -1, -1), pooled.expand(rows, -1)
        micro = self._micro.to(self.device, dtype).expand(rows, -1)
        out = self.transformer(ids, encoder_hidden_states=states, pooled_text_emb=pooled,
                               micro_conds=micro)  # [B, K, h, w]
        return out.float().reshape(rows, self.num_classes, positions).transpose(1, 2)
