"""Return matplotlib figures of the image track (token grids, edit cases, trade-offs), saved atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # headless runs fall back to Agg; notebooks keep their inline backend
import numpy as np
import pandas as pd

from . import shapesbench as sb
from ..io import atomic_write


def save_png(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Return `path` after saving `fig` there as PNG atomically and closing it."""
    out = atomic_write(Path(path), lambda h: fig.savefig(h, format="png", dpi=dpi, bbox_inches="tight"), "wb")
    plt.close(fig)
    return out


def show_tokens(ax: plt.Axes, tokens: np.ndarray, title: str | None = None, fontsize: int = 7) -> None:
    """Draw palette tokens [16, 16] (or [256]) on `ax`; [MASK] (id K) is drawn grey."""
    t = np.asarray(tokens).reshape(sb.SIZE, sb.SIZE)
    palette = np.vstack([sb.PALETTE, [[128, 128, 128]]])  # id K = [MASK]
    ax.imshow(palette[np.clip(t, 0, sb.NUM_CLASSES)], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def show_mask(ax: plt.Axes, mask: np.ndarray, title: str | None = None, fontsize: int = 7) -> None:
    """Draw a boolean mask [16, 16] (or [256]) black on white."""
    ax.imshow(np.asarray(mask).reshape(sb.SIZE, sb.SIZE), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def _wrap(text: str, width: int = 28) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])


def case_figure(cases: pd.DataFrame, source: np.ndarray, columns: dict[str, np.ndarray],
                mask: np.ndarray | None = None) -> plt.Figure:
    """Return a figure with one row per case: source, each named column of grids [N, 16, 16], mask."""
    n = len(cases)
    ncol = 1 + len(columns) + (mask is not None)
    fig, axes = plt.subplots(n, ncol, figsize=(1.9 * ncol, 2.1 * n), squeeze=False)
    for r, (_, row) in enumerate(cases.iterrows()):
        show_tokens(axes[r, 0], source[r], f"{row['type']}\n{_wrap(row['source_prompt'])}", fontsize=6)
        for c, (name, grids) in enumerate(columns.items(), start=1):
            title = f"{name}\n{_wrap(row['target_prompt'])}" if c == 1 else name
            show_tokens(axes[r, c], grids[r], title, fontsize=6)
        if mask is not None:
            show_mask(axes[r, -1], mask[r], "edit mask", fontsize=6)
    fig.tight_layout()
    return fig


def token_grid(images: np.ndarray, titles: list[str] | None = None, ncol: int = 8) -> plt.Figure:
    """Return a figure of token images [N, 16, 16] in a grid, with optional wrapped titles."""
    n = len(images)
    nrow = max(1, -(-n // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.7 * ncol, 1.9 * nrow), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i < n:
            show_tokens(ax, images[i], _wrap(titles[i], 24) if titles else None, fontsize=5)
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def heatmaps(maps: np.ndarray, titles: list[str], cmap: str = "magma", ncol: int = 8,
             vmin: float | None = None, vmax: float | None = None) -> plt.Figure:
    """Return a figure of per-pixel heat maps [N, 16, 16] on a shared colour scale with a colour bar."""
    maps = np.asarray(maps, dtype=float).reshape(-1, sb.SIZE, sb.SIZE)
    n = len(maps)
    nrow = max(1, -(-n // ncol))
    vmin = float(maps.min()) if vmin is None else vmin
    vmax = float(maps.max()) if vmax is None else vmax
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.7 * ncol, 1.8 * nrow), squeeze=False)
    im = None
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            im = ax.imshow(maps[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(titles[i], fontsize=7)
        else:
            ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    return fig


def tradeoff(df: pd.DataFrame, label: str, group: str | None = None, baselines: pd.DataFrame | None = None,
             types: list[str] | None = None) -> plt.Figure:
    """Return preservation-vs-edit-accuracy panels (overall + per edit type) for a sweep.

    `df` has columns `type` ("overall" or an edit type), `edit_accuracy`, `preservation` and the
    swept column `label`; points with the same `group` value are joined in sweep order and
    annotated with their `label` value. `baselines` (columns `method`, `type`, `edit_accuracy`,
    `preservation`) are drawn as black markers.
    """
    types = types or ["overall", *[t for t in sb.EDIT_TYPES if t in set(df["type"])]]
    ncol = min(4, len(types))
    nrow = -(-len(types) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 3.0 * nrow), squeeze=False)
    markers = {"lambda1_zero": "s", "inpainting_oracle_mask": "^", "regeneration": "x"}
    for ax, typ in zip(axes.ravel(), types):
        part = df[df["type"] == typ]
        groups = part.groupby(group, sort=False) if group else [(None, part)]
        for key, grp in groups:
            ax.plot(grp["edit_accuracy"], grp["preservation"], "o-", ms=3, lw=1,
                    label=None if key is None else f"{group}={key}")
            for _, r in grp.iterrows():
                v = r[label]
                ax.annotate(f"{v:g}" if isinstance(v, (int, float, np.floating)) else str(v),
                            (r["edit_accuracy"], r["preservation"]), fontsize=6, xytext=(2, 2), textcoords="offset points")
        if baselines is not None:
            for _, b in baselines[baselines["type"] == typ].iterrows():
                ax.plot(b["edit_accuracy"], b["preservation"], markers.get(b["method"], "d"), color="k", ms=6,
                        mfc="none", label=b["method"])
        ax.set_title(typ, fontsize=9)
        ax.set_xlabel("edit accuracy (in mask vs oracle)", fontsize=7)
        ax.set_ylabel("preservation (outside mask)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(types):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(5, len(handles)), fontsize=7, frameon=False)
    fig.suptitle(f"DICE edits: preservation vs edit accuracy over {label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


def loss_curve(df: pd.DataFrame) -> plt.Figure:
    """Return a figure of training loss against step (columns `step`, `loss`)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(df["step"], df["loss"], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / pixel)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def schedule_curves(curves: pd.DataFrame) -> plt.Figure:
    """Return lambda1 against editing step, one line per (schedule, start value)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    styles = ["-", "--", ":", "-."]
    colours = {}
    for (kind, start), grp in curves.groupby(["schedule", "start"], sort=False):
        colour = colours.setdefault(kind, f"C{len(colours)}")
        ls = styles[sorted(curves["start"].unique()).index(start) % len(styles)]
        ax.plot(grp["step"], grp["lambda1"], ls, color=colour, marker=".", label=f"{kind}, start {start:g}")
    ax.set_xlabel("editing step (0 = noisiest)")
    ax.set_ylabel("lambda1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
