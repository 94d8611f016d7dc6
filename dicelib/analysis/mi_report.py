"""Notebook 01's tables, figure and checks: the paper's Fig. 3 with a Monte Carlo check and discrete curves."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
from tqdm import tqdm

from ..core.mutual_information import discrete_mi, gaussian_mi, gaussian_mi_monte_carlo, linear_betas
from ..core.transitions import MultinomialSchedule
from ..errors import DiceError, Relation, integer, list_of, number
from ..io import stage_params

PAPER_MI_T1 = 5.00025e-5  # nats at t = 1 for beta linear 1e-4 -> 0.02, T = 1000

BETA = number(0, 1, open_lo=True, open_hi=True)
PARAMS = stage_params(  # notebook 01's parameters (params.yaml group mutual_information; seed from base)
    "mutual_information", "seed",
    Relation(("mc_timesteps", "num_steps"), "every Monte Carlo timestep in 1..num_steps",
             lambda ts, n: all(t <= n for t in ts)),
    num_steps=integer(1), beta_start=BETA, beta_end=BETA, mc_timesteps=list_of(integer(1)),
    mc_samples=integer(2),  # a standard error needs two samples
    discrete_classes=list_of(integer(2)),  # MI is reported over log K
    discrete_steps=integer(1))


def gaussian_table(num_steps: int, beta_start: float, beta_end: float, mc_timesteps: list[int],
                   mc_samples: int, seed: int) -> pd.DataFrame:
    """Return t, mi_closed_form, mi_monte_carlo, mi_mc_stderr for t = 1..T (Monte Carlo only at mc_timesteps)."""
    betas = linear_betas(num_steps, beta_start, beta_end)
    table = pd.DataFrame({"t": range(1, num_steps + 1), "mi_closed_form": gaussian_mi(betas).numpy()})
    table["mi_monte_carlo"] = math.nan
    table["mi_mc_stderr"] = math.nan
    gen = torch.Generator().manual_seed(seed)
    for t in tqdm(sorted(set(mc_timesteps)), desc="Monte Carlo", leave=False):
        if not 1 <= t <= num_steps:
            raise DiceError(f"Monte Carlo timestep {t} is outside 1..{num_steps}")
        est, se = gaussian_mi_monte_carlo(betas, t, mc_samples, gen)
        table.loc[table.t == t, ["mi_monte_carlo", "mi_mc_stderr"]] = est, se
    return table


def discrete_table(classes: list[int], num_steps: int) -> pd.DataFrame:
    """Return the exact discrete MI for each K over t = 1..T: columns K, t, t_over_T, mi."""
    schedule = MultinomialSchedule.vq_linear(num_steps)
    rows = []
    for k in tqdm(classes, desc="discrete MI", leave=False):
        mi = discrete_mi(k, schedule)
        rows += [{"K": k, "t": t, "t_over_T": t / num_steps, "mi": float(v)} for t, v in enumerate(mi.tolist(), 1)]
    return pd.DataFrame(rows)


def summary(gaussian: pd.DataFrame, discrete: pd.DataFrame) -> dict:
    """Return the metrics of notebook 01: MI at t = 1, monotonicity, Monte Carlo agreement."""
    mc = gaussian.dropna(subset=["mi_monte_carlo"])
    z = ((mc.mi_monte_carlo - mc.mi_closed_form) / mc.mi_mc_stderr).abs()
    closed = gaussian.mi_closed_form
    return {
        "mi_t1_nats": float(closed.iloc[0]),
        "mi_tT_nats": float(closed.iloc[-1]),
        "decreasing": bool((closed.diff().dropna() < 0).all()),
        "mc_points": int(len(mc)),
        "mc_max_abs_z": float(z.max()) if len(mc) else None,
        "mc_within_3se": bool((z < 3).all()),
        "discrete_mi_t1_over_log_k": {int(k): float(g.mi.iloc[0] / math.log(k)) for k, g in discrete.groupby("K")},
    }


def figure(gaussian: pd.DataFrame, discrete: pd.DataFrame) -> plt.Figure:
    """Return Fig. 3 (Gaussian closed form with Monte Carlo points) beside the discrete curves."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(gaussian.t, gaussian.mi_closed_form, color="C0", label="closed form (Remark 3.1)")
    mc = gaussian.dropna(subset=["mi_monte_carlo"])
    ax1.errorbar(mc.t, mc.mi_monte_carlo, yerr=3 * mc.mi_mc_stderr, fmt="o", color="C3", ms=4, capsize=3,
                 label="Monte Carlo ± 3 s.e.")
    ax1.set(xlabel="timestep t", ylabel="I(z_t; x_0)  [nats per dimension]", title="Gaussian DDPM (paper Fig. 3)")
    ax1.set_xscale("log")  # most of the decay happens in the first few steps
    ax1.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax1.legend(frameon=False, loc="upper right")
    for i, (k, g) in enumerate(discrete.groupby("K")):
        ax2.plot(g.t_over_T, g.mi, color=plt.cm.viridis(i / max(1, discrete.K.nunique() - 1)), label=f"K = {k}")
    ax2.set_yscale("log")
    ax2.set(xlabel="t / T", ylabel="I(z_t; x_0)  [nats per token]",
            title="Mask-and-replace, oracle denoiser (exact)")
    ax2.legend(frameon=False)
    fig.tight_layout()
    return fig
