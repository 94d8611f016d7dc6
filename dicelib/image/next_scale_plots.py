"""Return notebook 06's figures: one case's pyramid, latents and edits; the method comparison; Regeneration by start scale."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import shapesbench as sb
from .plotting import SCORE_NAMES, _err, _types, show_tokens

NAMES = {"varin": "VARIN (next-scale)", "dice_masked": "DICE (masked method)", "regeneration": "Regeneration (VARIN Alg. 4)",
         "lambda1_zero": "lambda1 = 0 (no latents)", "target_only": "target-only VARIN"}


def _upsample(m: np.ndarray) -> np.ndarray:
    """Return a flattened s x s map as a 16 x 16 image (nearest token: each token a block, blocks of 1-2 pixels
    where 16 / s is not whole)."""
    s = int(round(len(m) ** 0.5))
    idx = np.arange(sb.SIZE) * s // sb.SIZE
    return np.asarray(m).reshape(s, s)[idx][:, idx]


def _lead(z: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return per token the latent of the source colour minus the largest other latent [n]."""
    own = np.take_along_axis(z, x[:, None], 1)[:, 0]
    other = np.where(np.arange(z.shape[1])[None] == x[:, None], -np.inf, z).max(1)
    return own - other


def example_figure(ex: dict[str, Any]) -> plt.Figure:
    """Return one case: source and target pyramids, the LAI latents' lead of the source colour per scale, and
    VARIN's edits (finest map) by start scale."""
    src, tgt = [m[0].numpy() for m in ex["source"]], [m[0].numpy() for m in ex["target"]]
    inv = ex["inversions"]["lai"]
    z = inv.latents[0].float().numpy()
    offs = np.cumsum([0] + [len(m) for m in src])
    num = len(src)
    edits = ex["edits"]
    ncol = max(num, len(edits) + 1)
    fig, axes = plt.subplots(4, ncol, figsize=(1.9 * ncol, 8.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(num):
        side = int(round(len(src[k]) ** 0.5))
        show_tokens(axes[0, k], _upsample(src[k]), f"source map {k} ({side}x{side})", fontsize=9)
        show_tokens(axes[1, k], _upsample(tgt[k]), f"target map {k}", fontsize=9)
        lead = _lead(z[offs[k]:offs[k + 1]], src[k])
        im = axes[2, k].imshow(lead.reshape(side, side), cmap="viridis", interpolation="nearest")
        axes[2, k].set_title(f"LAI lead, scale {k}\n[{lead.min():.1f}, {lead.max():.1f}]", fontsize=9)
        axes[2, k].axis("on")
        axes[2, k].set_xticks([])
        axes[2, k].set_yticks([])
    for a in axes[:3, :num].ravel():
        a.axis("on")
    case = ex["case"]
    show_tokens(axes[3, 0], src[-1], "source image", fontsize=9)
    axes[3, 0].axis("on")
    for j, (s, maps) in enumerate(edits.items(), start=1):
        out = maps[-1][0].numpy()
        ok = sb.matches_prompt(out.reshape(sb.SIZE, sb.SIZE), case["target_prompt"], sizes=True)
        show_tokens(axes[3, j], out, f"edit, start scale {s}\n{'parses as target' if ok else 'does not parse'}", fontsize=9)
        axes[3, j].axis("on")
    fig.colorbar(im, ax=axes[2, :num].tolist(), shrink=0.8, label="latent lead of source colour")
    fig.suptitle(f"{case['type']}: '{case['source_prompt']}' -> '{case['target_prompt']}'\n"
                 f"(VARIN, lai latents, lambda1 = {ex['lambda1']:g}, lambda2 = {1 - ex['lambda1']:g})", fontsize=10)
    return fig


def comparison_figure(final: pd.DataFrame, scores: tuple[str, ...] = ("edit_accuracy", "preservation", "exact_parse"),
                      title: str | None = None) -> plt.Figure:
    """Return bars per edit type (overall first) of each method, one panel per score, with 95 % interval bars
    (columns of `final`: method, type, the scores and their _lo / _hi)."""
    methods = [m for m in NAMES if m in set(final["method"])]
    types = _types(final)
    fig, axes = plt.subplots(len(scores), 1, figsize=(9.5, 2.6 * len(scores) + 0.9), squeeze=False, sharey=True)
    width = 0.8 / len(methods)
    x = np.arange(len(types))
    for r, score in enumerate(scores):
        ax = axes[r, 0]
        for j, method in enumerate(methods):
            part = final[final["method"] == method].set_index("type").loc[types]
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, part[score], width, yerr=_err(part, score), capsize=1.5,
                   error_kw={"elinewidth": 0.7}, color=f"C{j}", label=NAMES[method])
        ax.set_xticks(x, [t.replace("_", "\n") for t in types], fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_title(SCORE_NAMES.get(score, score), fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(title or "ShapesBench test edits with the exact oracle, per edit type (bars: 95 % bootstrap intervals)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.9 / (2.6 * len(scores) + 0.9), 1, 0.97))
    return fig


def start_scale_figure(regen: pd.DataFrame, varin: pd.Series) -> plt.Figure:
    """Return Regeneration's preservation and exact parse by start scale (overall, 95 % intervals), VARIN as lines."""
    over = regen[regen["type"] == "overall"].sort_values("start_scale")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, score in zip(axes, ("preservation", "exact_parse")):
        ax.errorbar(over["start_scale"], over[score], yerr=_err(over, score), marker="o", capsize=3,
                    label="Regeneration (first maps kept)")
        ax.axhline(varin[score], color="C3", linestyle="--", label="VARIN (chosen settings)")
        ax.set_xlabel("start scale (maps kept from the source)", fontsize=9)
        ax.set_ylabel(SCORE_NAMES.get(score, score), fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.set_xticks(over["start_scale"])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    fig.suptitle("Test split: Regeneration by start scale against VARIN (VARIN Table 3 analogue)", fontsize=10)
    fig.tight_layout()
    return fig
