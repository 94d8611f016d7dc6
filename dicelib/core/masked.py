"""DICE Algorithm 1 for masked generative models: nested masks over a fixed noise token map (SPEC §2.2).

Step i (1..N) sees x_i = x0 where u >= s_i and the noise map n where u < s_i; editing re-predicts
every position from x_i and re-masks with m_{i-1}, so the masks and noise are shared by
inversion and editing and only the latents carry x0's content.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import DiceError, check_choice
from .gumbel import uniform
from .schedules import MASK_SCHEDULES, mask_levels
from .settings import INVERT

NOISE_KINDS = ("uniform", "mask")


def draw_trajectory(model: Any, x0: torch.Tensor, steps: int, tau: float, generator: torch.Generator,
                    mask_schedule: str = INVERT.mask_schedule, noise: str = INVERT.noise) -> dict[str, Any]:
    """Return the masked trajectory's fields: levels [N], u [B, D] float64, noise map [B, D] long."""
    check_choice("mask schedule", mask_schedule, tuple(MASK_SCHEDULES))
    check_choice("noise kind", noise, NOISE_KINDS)
    k = model.num_classes
    if noise == "mask":
        if model.mask_id is None:
            raise DiceError(f"noise='mask' needs a model with a [MASK] input token; {type(model).__name__}.mask_id is None")
        noise_map = torch.full_like(x0, int(model.mask_id))
    else:
        noise_map = torch.randint(k, tuple(x0.shape), generator=generator, device=generator.device).to(x0.device)
    u = uniform(tuple(x0.shape), generator, device=x0.device)
    return {"levels": mask_levels(steps, tau, mask_schedule), "u": u, "noise": noise_map,
            "mask_schedule": mask_schedule, "noise_kind": noise}


class MaskedTrajectory:
    """The state rules of Algorithm 1 for an inversion: x_i, labels, and the re-masking of edits."""

    def __init__(self, inv: Any):
        self.inv = inv
        self.num_states = inv.num_classes
        levels = inv.levels.to(inv.u.device)
        self.masks = inv.u.unsqueeze(0) < levels.view(-1, 1, 1)  # [N, B, D], nested in i

    def model_level(self, i: int) -> float:
        """Return the noise level the model is told at step index i (0-based)."""
        return float(self.inv.levels[i])

    def state(self, i: int) -> torch.Tensor:
        """Return x_{i+1} of the inversion trajectory [B, D]."""
        return torch.where(self.masks[i], self.inv.noise, self.inv.x0)

    def label(self, i: int) -> torch.Tensor:
        """Return the token the latent at step index i must reproduce: x0 [B, D]."""
        return self.inv.x0

    def yhat(self, log_p_x0: torch.Tensor, x: torch.Tensor, i: int) -> torch.Tensor:
        """Return the distribution the latent corrects: the denoiser's x0 log-probs [B, D, K]."""
        return log_p_x0

    def model_target(self, log_p_x0_clean: torch.Tensor, i: int) -> torch.Tensor:
        """Return the `model` pseudo-inverse target at step index i: D(x0, 0, c) itself."""
        return log_p_x0_clean

    def restrict(self, scores: torch.Tensor, i: int) -> torch.Tensor:
        """Return the scores the argmax runs over (all K classes are tokens here)."""
        return scores

    def advance(self, x0_tilde: torch.Tensor, i: int) -> torch.Tensor:
        """Return x_i from the prediction at step i+1: re-mask with m_i (none after the last step)."""
        return x0_tilde if i == 0 else torch.where(self.masks[i - 1], self.inv.noise, x0_tilde)
