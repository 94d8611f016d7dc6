"""A DICE inversion and edit written the way the DICE authors' code runs: the baseline of bench_grid.py.

Structure as in the authors' scripts: the latents of every step kept in float32, classifier-free
guidance as two forward passes (conditional, then unconditional), and one complete edit per
setting. The arithmetic is dicelib's (its trajectories, pseudo-inverses, injection and Gumbel
draws), so the outputs are token for token those of `dicelib.edit`; what differs is only how the
work is organised, which is what the benchmark measures.
"""

from __future__ import annotations

from typing import Any

import torch

from dicelib.core.api import TRAJECTORIES, _latent
from dicelib.core.conditions import null_like
from dicelib.core.guidance import levels_for, temperature_at
from dicelib.core.gumbel import gumbel
from dicelib.core.injection import inject
from dicelib.core.settings import resolve_lambda2


def guided_log_probs(model: Any, x: torch.Tensor, t: torch.Tensor, cond: Any, cfg: float | None,
                     temperature: float) -> torch.Tensor:
    """Return guided log-probs [B, D, K]: two forward passes when guidance is on (the authors' way)."""
    logp = torch.log_softmax(model.logits(x, t, cond).float() / temperature, -1)
    if cfg is None or cfg == 1.0:
        return logp.clamp(min=-70.0)
    uncond = torch.log_softmax(model.logits(x, t, null_like(model, x.shape[0])).float() / temperature, -1)
    return torch.log_softmax(uncond + cfg * (logp - uncond), -1).clamp(min=-70.0)


def reference_latents(model: Any, inv: Any) -> torch.Tensor:
    """Return float32 latents [n, B, D, K'] of every step of `inv`'s trajectory, recomputed step by step."""
    traj = TRAJECTORIES[inv.method](inv)
    n = inv.num_edit_steps
    out = []
    for i in range(n):
        x = traj.state(i)
        t = levels_for(x, traj.model_level(i))
        yhat = traj.yhat(guided_log_probs(model, x, t, inv.cond, inv.cfg_scale, temperature_at(inv.temperature, i, n)), x, i)
        out.append(_latent(inv, traj, i, yhat, None).float())
    return torch.stack(out)


def reference_edit(model: Any, inv: Any, latents: torch.Tensor, cond: Any, lambda1: float, lambda2: float | None,
                   generator: torch.Generator, injection: str = "add") -> torch.Tensor:
    """Return one edit [B, D] (uniform lambda schedule), regenerating the whole trajectory for this setting alone."""
    traj = TRAJECTORIES[inv.method](inv)
    n = inv.num_edit_steps
    l2 = resolve_lambda2(lambda1, lambda2)
    x = traj.state(n - 1)
    for i in range(n - 1, -1, -1):
        t = levels_for(x, traj.model_level(i))
        yhat = traj.yhat(guided_log_probs(model, x, t, cond, inv.cfg_scale, temperature_at(inv.temperature, i, n)), x, i)
        g = gumbel(tuple(yhat.shape), generator, device=yhat.device) if l2 != 0 else torch.zeros_like(yhat)
        x = traj.advance(traj.restrict(inject(yhat, latents[i], g, lambda1, l2, injection), i).argmax(-1), i)
    return x
