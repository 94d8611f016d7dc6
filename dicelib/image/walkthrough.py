"""Return the pieces of one DICE edit shown step by step (notebook 00): states, masks, latent maps, lambda sweeps.

Everything here reads an `Inversion` of the masked method (Alg. 1) for one batch row and turns
it into arrays [steps, 16, 16] and figures a student can look at.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from . import metrics as im
from . import shapesbench as sb
from ..core.api import edit_grid
from ..core.settings import resolve_lambda2
from ..errors import DiceError, list_of, string
from ..io import LAMBDA, stage_params
from .plotting import heatmaps, plt, show_mask, show_tokens

PARAMS = stage_params("walkthrough", "seed steps tau cfg_scale pseudo_inverse", case_id=string(),
                      lambdas=list_of(LAMBDA))  # notebook 00


def _masked(inv: Any) -> None:
    if inv.method != "masked":
        raise DiceError(f"the walkthrough shows the masked method's trajectory; got method {inv.method!r}")


def masks(inv: Any, row: int = 0) -> np.ndarray:
    """Return the nested masks m_1..m_N of one row: [N, 16, 16] bool (True = noised)."""
    _masked(inv)
    return (inv.u[row].cpu().unsqueeze(0) < inv.levels.view(-1, 1)).numpy().reshape(-1, sb.SIZE, sb.SIZE)


def states(inv: Any, row: int = 0) -> np.ndarray:
    """Return the noisy states x_1..x_N of one row: [N, 16, 16] (id K = [MASK])."""
    m = masks(inv, row).reshape(len(inv.levels), -1)
    x0, noise = inv.x0[row].cpu().numpy(), inv.noise[row].cpu().numpy()
    return np.where(m, noise, x0).reshape(-1, sb.SIZE, sb.SIZE)


def latent_at_source(inv: Any, row: int = 0) -> np.ndarray:
    """Return z_i at the source colour of every pixel: [N, 16, 16].

    With the onehot pseudo-inverse this is -log p(x0 | x_i, c), the model's surprise at the true
    colour: the correction the latent stores so that the argmax lands on x0.
    """
    if inv.latents is None:
        raise DiceError("this inversion stores no latents (store='none'); invert with store='float32'")
    z = inv.latents[:, row].float().cpu()  # [N, D, K]
    x0 = inv.x0[row].cpu().view(1, -1, 1).expand(z.shape[0], -1, 1)
    return z.gather(-1, x0).squeeze(-1).numpy().reshape(-1, sb.SIZE, sb.SIZE)


def _every(n: int, every: int | None) -> int:
    return max(1, n // 8) if every is None else every  # about 8 panels unless told


def trajectory_figure(inv: Any, row: int = 0, every: int | None = None) -> plt.Figure:
    """Return a figure: top row the noisy states x_i, bottom row their masks m_i (every `every`-th step)."""
    xs, ms = states(inv, row), masks(inv, row)
    every = _every(len(xs), every)
    idx = list(range(len(xs) - 1, -1, -every))
    fig, axes = plt.subplots(2, len(idx), figsize=(1.5 * len(idx), 3.3), squeeze=False)
    for c, i in enumerate(idx):
        show_tokens(axes[0, c], xs[i], f"x_{i + 1}  s={float(inv.levels[i]):.2f}")
        show_mask(axes[1, c], ms[i], f"m_{i + 1}: {ms[i].mean():.0%} noised")
    fig.tight_layout()
    return fig


def latent_figure(inv: Any, row: int = 0, every: int | None = None) -> plt.Figure:
    """Return heat maps of z_i at the source colour (every `every`-th step, noisiest first)."""
    maps = latent_at_source(inv, row)
    every = _every(len(maps), every)
    idx = list(range(len(maps) - 1, -1, -every))
    return heatmaps(maps[idx], [f"z_{i + 1} at x0" for i in idx], ncol=len(idx), vmin=0.0)


def edits_over_lambda(model: Any, inv: Any, cond: Any, lambdas: list[float], seed: int = 0) -> np.ndarray:
    """Return edits [len(lambdas), B, 16, 16] under `cond` with lambda1 = l (lambda2 = 1 - l)."""
    gens = [torch.Generator().manual_seed(seed) for _ in lambdas]  # same Gumbel draws for every lambda: only the weight changes
    out = edit_grid(model, inv, [{"lambda1": float(lam), "lambda2": None} for lam in lambdas], conds=[cond] * len(lambdas),
                    generators=gens)  # one grid: one model call per step for every lambda
    return torch.stack(out).cpu().numpy().reshape(len(lambdas), -1, sb.SIZE, sb.SIZE)


def lambda_table(edits: np.ndarray, lambdas: list[float], source: np.ndarray, target: np.ndarray,
                 mask: np.ndarray, target_prompt: str | None = None) -> pd.DataFrame:
    """Return edit accuracy and preservation per lambda for one case (edits [L, 16, 16]), and with
    `target_prompt` whether each edit parses exactly as it (column parses_as_target)."""
    src = np.broadcast_to(source, edits.shape)
    tgt = np.broadcast_to(target, edits.shape)
    msk = np.broadcast_to(mask, edits.shape)
    return pd.DataFrame({"lambda1": lambdas, "lambda2": [resolve_lambda2(v, None) for v in lambdas],
                         "edit_accuracy": im.edit_accuracy(edits, tgt, msk), "preservation": im.preservation(edits, src, msk)}
                        | ({} if target_prompt is None else
                           {"parses_as_target": [sb.matches_prompt(x, target_prompt, sizes=True) for x in edits]}))
