"""DICE Algorithm 2 for multinomial (mask-and-replace) diffusion (SPEC §2.3).

Inversion draws x_t ~ q(x_t | x0) independently for every t of its timestep grid (not a Markov
chain, as in edit-friendly DDPM inversion) and records z_t against log p(x_s | x_t, c), the model's
posterior over the K tokens plus [MASK] (index K) for the grid's previous timestep s. With
`steps` < T the grid skips timesteps: s < t - 1, and the posterior jumps over the steps between.
"""

from __future__ import annotations

from typing import Any

import torch

from .transitions import LOG_FLOOR
from ..errors import DiceError
from .gumbel import gumbel_argmax
from .schedules import check_steps
from .transitions import MultinomialSchedule, log_model_posterior, log_q_xt_given_x0

DEFAULT_STEPS = 100


def resolve_schedule(model: Any, steps: int | None, schedule: MultinomialSchedule | None) -> MultinomialSchedule:
    """Return the transition schedule: the explicit one, else the model's, else VQ-linear over `steps` (T = steps).

    With a schedule, `steps` (1..T, None = T) only picks the timestep grid (see `timestep_grid`).
    """
    steps = None if steps is None else check_steps(steps)
    schedule = schedule or getattr(model, "transition_schedule", None)
    if schedule is None:
        return MultinomialSchedule.vq_linear(steps or DEFAULT_STEPS)
    if not isinstance(schedule, MultinomialSchedule):
        raise DiceError(f"schedule must be a dicelib.transitions.MultinomialSchedule, got {type(schedule).__name__}")
    if steps is not None and steps > schedule.num_steps:
        raise DiceError(f"steps={steps} exceeds the transition schedule's T={schedule.num_steps}; steps must be in "
                        f"1..{schedule.num_steps} (fewer steps skip timesteps) or None (= T)")
    return schedule


def timestep_grid(steps: int, tau: float, num_steps: int) -> list[int]:
    """Return the timesteps s_1 < ... < s_n = t0 = round(tau * T) of a `steps`-step grid (s_0 = 0 left out).

    n = round(tau * steps) (at least 1) integer timesteps evenly spaced from 0 to t0, rounded half up in
    exact integer arithmetic: s_j = round(j * t0 / n). steps = T gives 1..t0, every timestep.
    """
    t0 = max(1, round(tau * num_steps))
    n = max(1, round(tau * steps))  # <= t0 as steps <= T
    return [(2 * j * t0 + n) // (2 * n) for j in range(1, n + 1)]


def grid_timesteps(levels: torch.Tensor, num_steps: int) -> list[int]:
    """Return the integer timesteps t = level * T of an inversion's `levels`; raise a DiceError unless they
    are integers (to 1e-3) increasing strictly from 1 (how a saved inversion stores its timestep grid)."""
    scaled = levels.double().cpu() * num_steps
    grid = scaled.round().long()
    if not (bool(((scaled - grid).abs() <= 1e-3).all()) and bool((torch.diff(grid, prepend=grid.new_zeros(1)) > 0).all())):
        raise DiceError(f"multinomial levels must be timesteps t / T with integers 1 <= t_1 < ... <= T={num_steps}, "
                        f"got levels * T = {scaled.tolist()}")
    return grid.tolist()


def draw_trajectory(model: Any, x0: torch.Tensor, steps: int | None, tau: float, generator: torch.Generator,
                    schedule: MultinomialSchedule | None = None) -> dict[str, Any]:
    """Return the multinomial trajectory's fields: independent q-samples x_{s_1}..x_{s_n} [n, B, D] on the
    timestep grid (levels s_j / T) and the schedule."""
    k = model.num_classes
    if model.mask_id != k:
        raise DiceError(f"the multinomial method needs a model whose [MASK] input is index K={k}; "
                        f"{type(model).__name__}.mask_id is {model.mask_id!r}")
    sched = resolve_schedule(model, steps, schedule)
    big_t = sched.num_steps
    grid = timestep_grid(steps or big_t, tau, big_t)
    traj = torch.stack([gumbel_argmax(log_q_xt_given_x0(x0, t, sched, k), generator) for t in grid])
    return {"levels": torch.tensor(grid, dtype=torch.float64) / big_t, "trajectory": traj.to(x0.device),
            "alpha_bar": sched.alpha_bar, "gamma_bar": sched.gamma_bar, "steps": big_t}


class MultinomialTrajectory:
    """The state rules of Algorithm 2 for an inversion: x_t, labels x_{t-1}, posterior predictions."""

    def __init__(self, inv: Any):
        self.inv = inv
        self.num_states = inv.num_classes + 1
        self.schedule = MultinomialSchedule(inv.alpha_bar.cpu().double(), inv.gamma_bar.cpu().double())
        self.timesteps = [0] + grid_timesteps(inv.levels, self.schedule.num_steps)  # s_0 = 0, s_1, ..., s_n

    def model_level(self, i: int) -> float:
        """Return the noise level t / T the model is told at step index i (t = s_{i+1})."""
        return float(self.inv.levels[i])

    def state(self, i: int) -> torch.Tensor:
        """Return x_t for t = s_{i+1}, the grid's (i+1)-th timestep [B, D] (values in 0..K)."""
        return self.inv.trajectory[i]

    def label(self, i: int) -> torch.Tensor:
        """Return x_s for s = s_i, the grid's previous timestep: the previous q-sample, or x0 at i = 0."""
        return self.inv.trajectory[i - 1] if i > 0 else self.inv.x0

    def yhat(self, log_p_x0: torch.Tensor, x: torch.Tensor, i: int) -> torch.Tensor:
        """Return log p(x_s | x_t, c) over K + 1 states [B, D, K+1] for t = s_{i+1}, s = s_i."""
        return log_model_posterior(log_p_x0, x, self.timesteps[i + 1], self.schedule, self.timesteps[i])

    def model_target(self, log_p_x0_clean: torch.Tensor, i: int) -> torch.Tensor:
        """Return the `model` target: D(x0, 0, c) where x_s kept x0's token, one-hot elsewhere."""
        label = self.label(i)
        onehot = torch.full((*label.shape, self.num_states), LOG_FLOOR, device=label.device).scatter_(-1, label.unsqueeze(-1), 0.0)
        soft = torch.cat([log_p_x0_clean, torch.full_like(log_p_x0_clean[..., :1], LOG_FLOOR)], dim=-1)
        return torch.where((label == self.inv.x0).unsqueeze(-1), soft, onehot)

    def restrict(self, scores: torch.Tensor, i: int) -> torch.Tensor:
        """Return scores for the argmax; the last step must land on a token, never on [MASK]."""
        return scores[..., :-1] if i == 0 else scores

    def advance(self, x_prev: torch.Tensor, i: int) -> torch.Tensor:
        """Return x_s: the argmax of the injected posterior already is the next state."""
        return x_prev
