"""DICE Algorithm 2 for multinomial (mask-and-replace) diffusion (SPEC §2.3).

Inversion draws x_t ~ q(x_t | x0) independently for every t (not a Markov chain, as in
edit-friendly DDPM inversion) and records z_t against log p(x_{t-1} | x_t, c), the model's
posterior over the K tokens plus [MASK] (index K).
"""

from __future__ import annotations

from typing import Any

import torch

from .transitions import LOG_FLOOR
from ..errors import DiceError
from .gumbel import gumbel_argmax
from .transitions import MultinomialSchedule, log_model_posterior, log_q_xt_given_x0

DEFAULT_STEPS = 100


def resolve_schedule(model: Any, steps: int | None, schedule: MultinomialSchedule | None) -> MultinomialSchedule:
    """Return the transition schedule: the explicit one, else the model's, else VQ-linear over `steps`."""
    schedule = schedule or getattr(model, "transition_schedule", None)
    if schedule is None:
        return MultinomialSchedule.vq_linear(steps or DEFAULT_STEPS)
    if not isinstance(schedule, MultinomialSchedule):
        raise DiceError(f"schedule must be a dicelib.transitions.MultinomialSchedule, got {type(schedule).__name__}")
    if steps is not None and steps != schedule.num_steps:
        raise DiceError(f"steps={steps} does not match the transition schedule's T={schedule.num_steps}; "
                        "leave steps=None or pass a schedule with that many steps")
    return schedule


def draw_trajectory(model: Any, x0: torch.Tensor, steps: int | None, tau: float, generator: torch.Generator,
                    schedule: MultinomialSchedule | None = None) -> dict[str, Any]:
    """Return the multinomial trajectory's fields: independent q-samples x_1..x_t0 [t0, B, D] and the schedule."""
    k = model.num_classes
    if model.mask_id != k:
        raise DiceError(f"the multinomial method needs a model whose [MASK] input is index K={k}; "
                        f"{type(model).__name__}.mask_id is {model.mask_id!r}")
    sched = resolve_schedule(model, steps, schedule)
    big_t = sched.num_steps
    t0 = max(1, round(tau * big_t))
    traj = torch.stack([gumbel_argmax(log_q_xt_given_x0(x0, t, sched, k), generator) for t in range(1, t0 + 1)])
    return {"levels": torch.arange(1, t0 + 1, dtype=torch.float64) / big_t, "trajectory": traj.to(x0.device),
            "alpha_bar": sched.alpha_bar, "gamma_bar": sched.gamma_bar, "steps": big_t}


class MultinomialTrajectory:
    """The state rules of Algorithm 2 for an inversion: x_t, labels x_{t-1}, posterior predictions."""

    def __init__(self, inv: Any):
        self.inv = inv
        self.num_states = inv.num_classes + 1
        self.schedule = MultinomialSchedule(inv.alpha_bar.cpu().double(), inv.gamma_bar.cpu().double())

    def model_level(self, i: int) -> float:
        return float(self.inv.levels[i])

    def state(self, i: int) -> torch.Tensor:
        """Return x_t for t = i + 1 [B, D] (values in 0..K)."""
        return self.inv.trajectory[i]

    def label(self, i: int) -> torch.Tensor:
        """Return x_{t-1} for t = i + 1: the previous q-sample, or x0 at t = 1."""
        return self.inv.trajectory[i - 1] if i > 0 else self.inv.x0

    def yhat(self, log_p_x0: torch.Tensor, x: torch.Tensor, i: int) -> torch.Tensor:
        """Return log p(x_{t-1} | x_t, c) over K + 1 states [B, D, K+1]."""
        return log_model_posterior(log_p_x0, x, i + 1, self.schedule)

    def model_target(self, log_p_x0_clean: torch.Tensor, i: int) -> torch.Tensor:
        """Return the `model` target: D(x0, 0, c) where x_{t-1} kept x0's token, one-hot elsewhere."""
        label = self.label(i)
        onehot = torch.full((*label.shape, self.num_states), LOG_FLOOR, device=label.device).scatter_(-1, label.unsqueeze(-1), 0.0)
        soft = torch.cat([log_p_x0_clean, torch.full_like(log_p_x0_clean[..., :1], LOG_FLOOR)], dim=-1)
        return torch.where((label == self.inv.x0).unsqueeze(-1), soft, onehot)

    def restrict(self, scores: torch.Tensor, i: int) -> torch.Tensor:
        """Return scores for the argmax; the last step must land on a token, never on [MASK]."""
        return scores[..., :-1] if i == 0 else scores

    def advance(self, x_prev: torch.Tensor, i: int) -> torch.Tensor:
        """Return x_{t-1}: the argmax of the injected posterior already is the next state."""
        return x_prev
