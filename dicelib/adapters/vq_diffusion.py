"""Return VQ-Diffusion (diffusers) wrapped as a multinomial DiscreteDenoiser for dicelib.

The transformer predicts log p(x0 | x_t, c) over K codebook ids for inputs in 0..K (K = [MASK]),
which is exactly the multinomial protocol; the scheduler's own cumulative schedule becomes the
adapter's `transition_schedule`. Guidance: dicelib computes u + w (c - u) on log-probs and
renormalises, as the VQ-Diffusion pipeline does (its default w = 5); the unconditional condition
is the checkpoint's learned classifier-free embedding. Truncation (pipeline default 1.0, i.e. off)
is not applied.
Placing the parts, prompts, VQ coding and loading (also from `pipe.components`) come from
`base.VQImageAdapter`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.transitions import MultinomialSchedule
from ..errors import DiceError
from .base import VQImageAdapter

REPO_ID = "microsoft/vq-diffusion-ithq"


def schedule_from_scheduler(scheduler: Any) -> MultinomialSchedule:
    """Return the scheduler's cumulative schedule as a MultinomialSchedule (index 0 = identity, float64).

    diffusers stores step t = 1..T at index t - 1 with the identity appended at index -1, and casts
    to float32; the same arrays are rebuilt here in float64 from the scheduler's config with its
    own helper functions, so abar + gbar stays <= 1 exactly as configured.
    """
    from diffusers.schedulers.scheduling_vq_diffusion import alpha_schedules, gamma_schedules

    cfg = scheduler.config
    _, att = alpha_schedules(cfg.num_train_timesteps, alpha_cum_start=cfg.alpha_cum_start, alpha_cum_end=cfg.alpha_cum_end)
    _, ctt = gamma_schedules(cfg.num_train_timesteps, gamma_cum_start=cfg.gamma_cum_start, gamma_cum_end=cfg.gamma_cum_end)
    steps = cfg.num_train_timesteps
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.from_numpy(att[:steps]).double()])
    gamma_bar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.from_numpy(ctt[:steps]).double()])
    return MultinomialSchedule(alpha_bar, gamma_bar)


class VQDiffusion(VQImageAdapter):
    """VQ-Diffusion as a DiscreteDenoiser: `logits(x [B, D] in 0..K, t [B], cond [B, L, H]) -> [B, D, K]`."""

    method = "multinomial"  # dicelib.invert(..., method=...)
    default_cfg = 5.0  # the pipeline's guidance scale (and the paper's Table 7)
    repo_id = REPO_ID
    subfolders = {"vqvae": "diffusers:VQModel", "transformer": "diffusers:Transformer2DModel",
                  "scheduler": "diffusers:VQDiffusionScheduler", "text_encoder": "transformers:CLIPTextModel",
                  "tokenizer": "transformers:CLIPTokenizer",
                  "learned_classifier_free_sampling_embeddings":
                      "diffusers.pipelines.deprecated.vq_diffusion:LearnedClassifierFreeSamplingEmbeddings"}
    aliases = {"learned_classifier_free_sampling_embeddings": "learned_embeddings"}  # VQDiffusionPipeline's name
    signed_pixels = True  # the VQ works in [-1, 1]
    cond_format = "embeddings [B, L, H]"

    def __init__(self, vqvae: Any, transformer: Any, scheduler: Any, text_encoder: Any = None, tokenizer: Any = None,
                 learned_embeddings: Any = None, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, name: str = "vq-diffusion") -> None:
        cfg = transformer.config
        if cfg.num_vector_embeds is None:
            raise DiceError("VQDiffusion needs a discrete Transformer2DModel (num_vector_embeds set)")
        super().__init__(vqvae, transformer, text_encoder, tokenizer, device, dtype, name)
        self.scheduler = scheduler
        self.learned_embeddings = learned_embeddings
        self.num_classes = int(cfg.num_vector_embeds) - 1  # K codebook ids; input id K is [MASK]
        self.mask_id = self.num_classes
        self.grid = (int(transformer.height), int(transformer.width))  # token map h x w, row-major
        self.num_positions = self.grid[0] * self.grid[1]  # D
        self.image_size = self.grid[0] * 2 ** (len(vqvae.config.block_out_channels) - 1)
        self.num_timesteps = int(scheduler.config.num_train_timesteps)
        if int(scheduler.config.num_vec_classes) != self.num_classes + 1:
            raise DiceError(f"scheduler has {scheduler.config.num_vec_classes} classes, transformer {self.num_classes + 1}")
        if cfg.num_embeds_ada_norm is not None and cfg.num_embeds_ada_norm < self.num_timesteps:
            raise DiceError(f"transformer knows {cfg.num_embeds_ada_norm} timesteps, scheduler uses {self.num_timesteps}")
        self.transition_schedule = schedule_from_scheduler(scheduler)

    @torch.no_grad()
    def encode_prompt(self, prompts: str | list[str]) -> torch.Tensor:
        """Return CLIP text states [B, L, H], L2-normalised on the last dim as the pipeline does."""
        states = self.text_encoder(self.tokenize(prompts))[0]
        return states / states.norm(dim=-1, keepdim=True)

    def null_condition(self) -> torch.Tensor:
        """Return the unconditional condition [1, L, H]: learned embeddings, else the encoded empty prompt."""
        emb = self.learned_embeddings
        if emb is not None and getattr(emb, "learnable", False):
            return emb.embeddings.detach().to(self.device, self.transformer.dtype)[None]
        return self.encode_prompt([""])

    # --- the protocol -----------------------------------------------------------------------
    def timesteps(self, t: torch.Tensor, rows: int) -> torch.Tensor:
        """Return the model's integer timesteps [B]: round(t * T) - 1, with clean t = 0 read as 0."""
        t = torch.as_tensor(t).detach().to("cpu", torch.float64).reshape(-1)
        t = t.expand(rows) if t.numel() == 1 else t
        if t.numel() != rows:
            raise DiceError(f"t has {t.numel()} entries for {rows} rows")
        # t = 0 is the clean input (pseudo_inverse="model"): the least noisy timestep the model knows
        return ((t * self.num_timesteps).round().long() - 1).clamp(0, self.num_timesteps - 1)

    @torch.no_grad()
    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Return log p(x0 | x_t, c) [B, D, K] (float32); rows with different t run as separate passes."""
        x = self.token_map(x).flatten(1)  # [B, D], D checked against the grid
        rows, positions = x.shape
        if not isinstance(cond, torch.Tensor) or cond.dim() != 3:
            raise DiceError("VQ-Diffusion conditions are text states [B, L, H] from encode_prompt")
        states = cond.to(self.device, self.transformer.dtype).expand(rows, -1, -1) if cond.shape[0] == 1 \
            else cond.to(self.device, self.transformer.dtype)
        steps = self.timesteps(t, rows)
        out = torch.empty(rows, positions, self.num_classes, device=self.device)
        # AdaLayerNorm takes one 0-d timestep per forward pass, so group the rows by timestep
        for step in steps.unique().tolist():
            sel = (steps == step).nonzero().squeeze(1).to(self.device)
            log_p = self.transformer(x[sel], encoder_hidden_states=states[sel],
                                     timestep=torch.tensor(step, device=self.device), return_dict=False)[0]
            out[sel] = log_p.float().transpose(1, 2)  # [b, K, D] -> [b, D, K]
        return out
