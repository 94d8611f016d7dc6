"""Return matplotlib figures of the image track (token grids, edit cases, trade-offs), saved atomically."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

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


def show_tokens(ax: plt.Axes, tokens: np.ndarray, title: str | None = None, fontsize: float = 9) -> None:
    """Draw palette tokens [16, 16] (or [256]) on `ax`; [MASK] (id K) is drawn grey."""
    t = np.asarray(tokens).reshape(sb.SIZE, sb.SIZE)
    palette = np.vstack([sb.PALETTE, [[128, 128, 128]]])  # id K = [MASK]
    ax.imshow(palette[np.clip(t, 0, sb.NUM_CLASSES)], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def show_mask(ax: plt.Axes, mask: np.ndarray, title: str | None = None, fontsize: float = 9) -> None:
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
    fig, axes = plt.subplots(n, ncol, figsize=(2.2 * ncol, 2.6 * n), squeeze=False)
    for r, (_, row) in enumerate(cases.iterrows()):
        show_tokens(axes[r, 0], source[r], f"{row['type']}\n{_wrap(row['source_prompt'], 24)}", fontsize=9)
        for c, (name, grids) in enumerate(columns.items(), start=1):
            title = f"{name}\n{_wrap(row['target_prompt'], 24)}" if c == 1 else name
            show_tokens(axes[r, c], grids[r], title, fontsize=9)
        if mask is not None:
            show_mask(axes[r, -1], mask[r], "edit mask", fontsize=9)
    fig.tight_layout()
    return fig


def token_grid(images: np.ndarray, titles: list[str] | None = None, ncol: int = 8) -> plt.Figure:
    """Return a figure of token images [N, 16, 16] in a grid, with optional wrapped titles."""
    n = len(images)
    nrow = max(1, -(-n // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.9 * ncol, 2.7 * nrow), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i < n:
            show_tokens(ax, images[i], _wrap(titles[i], 22) if titles else None, fontsize=9)
        else:
            ax.axis("off")
    fig.tight_layout(h_pad=1.0)
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
            ax.set_title(titles[i], fontsize=9)
        else:
            ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
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
    ax.legend(fontsize=9, ncol=2)
    fig.tight_layout()
    return fig


# --- figures comparing models and methods (notebooks 00, 02-04) -----------------------------------------

METHOD_NAMES = {"dice": "DICE", "lambda1_zero": "lambda1 = 0 (no latents)", "regeneration": "regeneration",
                "inpainting_oracle_mask": "inpainting, oracle mask"}
SCORE_NAMES = {"edit_accuracy": "edit accuracy (in mask)", "preservation": "preservation (outside mask)",
               "exact_parse": "exact parse = target prompt", "edit_score": "edit score (harmonic mean)"}
_MARKERS = {"lambda1_zero": "s", "inpainting_oracle_mask": "^", "regeneration": "X"}


def _types(df: pd.DataFrame) -> list[str]:
    return ["overall", *[t for t in sb.EDIT_TYPES if t in set(df["type"])]]


def _err(part: pd.DataFrame, col: str) -> np.ndarray | None:
    """Return matplotlib's [2, N] error bar lengths from <col>_lo / <col>_hi, or None without intervals."""
    if f"{col}_lo" not in part:
        return None
    v = part[col].to_numpy(dtype=float)
    return np.vstack([v - part[f"{col}_lo"].to_numpy(dtype=float), part[f"{col}_hi"].to_numpy(dtype=float) - v]).clip(min=0)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float, np.floating)) else str(v)


SWEEP_NAMES = {"lambda": "lambda1", "lambda1": "start lambda1", "tau": "tau", "cfg_scale": "guidance scale", "injection": "injection",
               "margin": "LAI margin", "pseudo_inverse": "pseudo-inverse"}  # swept columns in words
VALUE_NAMES = {"variance_preserving": "variance-preserving", "onehot": "one-hot", "lai": "LAI",
               "model": "model prediction", "mi": "mutual information"}  # swept values in words
FONT = 9  # the smallest text of a saved figure, in points (figures are saved at 100 % size)
PANELS_PER_ROW = 4


def _value_colours(values: list[Any]) -> dict[Any, Any]:
    """Return a colour per swept value: a sequential map for numbers (low = dark), distinct colours otherwise."""
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        order = sorted(values)
        cmap = plt.get_cmap("viridis")
        return {v: cmap(0.85 * order.index(v) / max(1, len(order) - 1)) for v in values}
    return {v: f"C{i}" for i, v in enumerate(values)}


def tradeoff_grid(df: pd.DataFrame, label: str, group: str | None = None, baselines: pd.DataFrame | None = None,
                  title: str | None = None) -> plt.Figure:
    """Return preservation-vs-edit-accuracy panels: per model (column `model`) one panel per edit type (overall
    first), four panels a row, every panel on the same axes.

    Each swept value of `label` has its own colour (with `group`: its own marker, and each group value its
    own colour), named in the legend, so no label is printed on the points; the points of one `group` value
    (or of the model, without `group`) are joined in sweep order and carry 95 % interval bars on both
    scores when `df` has them. `baselines` (columns model, method,
    type, scores and intervals) are drawn as black open markers with bars.
    """
    models = list(dict.fromkeys(df["model"])) if "model" in df else [None]
    types = _types(df)
    rows_per_model = -(-len(types) // PANELS_PER_ROW)
    nrow = rows_per_model * len(models)
    fig, axes = plt.subplots(nrow, PANELS_PER_ROW, figsize=(3.1 * PANELS_PER_ROW, 2.9 * nrow + 0.7),
                             squeeze=False, sharex=True, sharey=True)
    name = SWEEP_NAMES.get(label, label)
    colours = _value_colours(list(dict.fromkeys(df[label])))
    markers = dict(zip(dict.fromkeys(df[label]), itertools.cycle("osD^vP*X")))
    groups_legend: dict[str, Any] = {}  # with `group`: its values (colours) first, then the swept values (markers)
    legend: dict[str, Any] = {}
    for m, model in enumerate(models):
        mdf = df if model is None else df[df["model"] == model]
        for i in range(rows_per_model * PANELS_PER_ROW):
            ax = axes[m * rows_per_model + i // PANELS_PER_ROW, i % PANELS_PER_ROW]
            if i >= len(types):
                ax.axis("off")
                continue
            typ = types[i]
            part = mdf[mdf["type"] == typ]
            groups = list(part.groupby(group, sort=False)) if group else [(None, part)]
            for j, (key, grp) in enumerate(groups):
                if group:  # a colour per group, a marker per swept value
                    line = ax.plot(grp["edit_accuracy"], grp["preservation"], "-", color=f"C{j}", lw=1.2, zorder=1)[0]
                    groups_legend.setdefault(f"{SWEEP_NAMES.get(group, group)} = {VALUE_NAMES.get(key, _fmt(key))}", line)
                else:
                    ax.plot(grp["edit_accuracy"], grp["preservation"], "-", color="0.55", lw=1, zorder=1)
                for _, row in grp.iterrows():
                    one = row.to_frame().T
                    value = VALUE_NAMES.get(row[label], _fmt(row[label]))
                    h = ax.errorbar([row["edit_accuracy"]], [row["preservation"]], xerr=_err(one, "edit_accuracy"),
                                    yerr=_err(one, "preservation"), fmt=markers[row[label]] if group else "o", ms=6,
                                    elinewidth=0.7, capsize=2, color=f"C{j}" if group else colours[row[label]], zorder=2)
                    if group:
                        legend.setdefault(f"{name} = {value}", plt.Line2D([], [], marker=markers[row[label]], ls="none", color="0.3", ms=6))
                    else:
                        legend.setdefault(f"DICE, {name} = {value}", h)
            if baselines is not None:
                bdf = baselines if model is None else baselines[baselines["model"] == model]
                for _, b in bdf[bdf["type"] == typ].iterrows():
                    one = b.to_frame().T
                    bname = METHOD_NAMES.get(b["method"], b["method"])
                    h = ax.errorbar([b["edit_accuracy"]], [b["preservation"]], xerr=_err(one, "edit_accuracy"),
                                    yerr=_err(one, "preservation"), fmt=_MARKERS.get(b["method"], "d"), color="k",
                                    mfc="none", ms=7, elinewidth=0.7, capsize=2, zorder=3)
                    legend.setdefault(bname, h)
            ax.set_title(typ.replace("_", " ") if model is None else f"{model} model: {typ.replace('_', ' ')}",
                         fontsize=FONT + 1)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=FONT)
            ax.xaxis.set_tick_params(labelbottom=True)
            if i % PANELS_PER_ROW == 0:
                ax.set_ylabel("preservation\n(outside mask)", fontsize=FONT)
            if i + PANELS_PER_ROW >= len(types):
                ax.set_xlabel("edit accuracy (in mask)", fontsize=FONT)
    legend = groups_legend | legend
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(4, len(legend)), fontsize=FONT,
               frameon=False)
    fig.suptitle(title or f"DICE edits over {name}: preservation vs edit accuracy (bars: 95 % intervals over cases)",
                 fontsize=FONT + 2)
    fig.tight_layout(rect=(0, 0.5 / (2.9 * nrow + 0.7), 1, 0.97))
    return fig


def comparison_figure(final: pd.DataFrame, scores: tuple[str, ...] = ("edit_accuracy", "preservation", "exact_parse"),
                      title: str | None = None) -> plt.Figure:
    """Return bars per edit type (overall first) of each method, one row per score and one column per model,
    with 95 % interval bars; every panel on the same 0-1 axis (columns of `final`: model, method, type,
    the scores and their _lo / _hi)."""
    models = list(dict.fromkeys(final["model"]))
    methods = [m for m in METHOD_NAMES if m in set(final["method"])]
    types = _types(final)
    fig, axes = plt.subplots(len(scores), len(models), figsize=(6.2 * len(models), 2.5 * len(scores) + 0.8),
                             squeeze=False, sharey=True)
    width = 0.8 / len(methods)
    x = np.arange(len(types))
    for c, model in enumerate(models):
        for r, score in enumerate(scores):
            ax = axes[r, c]
            for j, method in enumerate(methods):
                part = final[(final["model"] == model) & (final["method"] == method)].set_index("type").loc[types]
                at = x + (j - (len(methods) - 1) / 2) * width
                ax.bar(at, part[score], width, yerr=_err(part, score),
                       capsize=1.5, error_kw={"elinewidth": 0.7}, color=f"C{j}", label=METHOD_NAMES[method])
                _mark_zeros(ax, at, part[score].to_numpy(dtype=float), width, f"C{j}")
            ax.set_xticks(x, [t.replace("_", "\n") for t in types], fontsize=FONT)
            ax.set_ylim(0, 1.08)
            ax.grid(axis="y", alpha=0.3)
            ax.tick_params(axis="y", labelsize=FONT)
            ax.set_title(f"{model} model: {SCORE_NAMES.get(score, score)}", fontsize=FONT + 1)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=FONT, frameon=False)
    fig.suptitle(title or "ShapesBench test edits per type (bars: 95 % bootstrap intervals over cases; "
                 "a bar at 0 is drawn as a flat dash)", fontsize=FONT + 2)
    fig.tight_layout(rect=(0, 0.6 / (2.5 * len(scores) + 0.8), 1, 0.97))
    return fig


def _mark_zeros(ax: plt.Axes, at: np.ndarray, values: np.ndarray, width: float, colour: Any) -> None:
    """Draw a flat dash of the bar's colour where a bar is (near) zero high, so a 0 reads as 0, not as no bar."""
    for x0, v in zip(at, values):
        if np.isfinite(v) and v < 0.01:
            ax.plot([x0 - width * 0.45, x0 + width * 0.45], [0.008, 0.008], color=colour, lw=3, solid_capstyle="butt",
                    clip_on=False, zorder=3)


def _parse_mark(ax: plt.Axes, ok: bool, label: bool = False) -> None:
    """Frame `ax` green (parses as the target prompt) or red (does not), a white margin between frame and image so
    the frame shows on any background; with `label`, also say it in words under the panel."""
    ax.set_xlim(-1.9, sb.SIZE + 0.9)
    ax.set_ylim(sb.SIZE + 0.9, -1.9)
    for side in ax.spines.values():
        side.set_edgecolor("#1a9641" if ok else "#d7191c")
        side.set_linewidth(3)
    if label:
        ax.set_xlabel("parses" if ok else "no parse", fontsize=FONT, color="#1a7a36" if ok else "#c0161a",
                      fontweight="bold", labelpad=2)


def examples_figure(cases: pd.DataFrame, grids: dict[str, np.ndarray], outputs: dict[str, dict[str, np.ndarray]],
                    rows: np.ndarray, title: str | None = None) -> plt.Figure:
    """Return one row per case of `rows`, headed by its edit type and its source and target prompts: source,
    oracle target, edit mask, then each model's output of each method (`outputs`: model label -> method ->
    [N, 16, 16]), framed green and labelled "parses" where the exact parser reads the output as the target
    prompt, red "no parse" where it does not."""
    cols = [(m, meth) for m, per in outputs.items() for meth in per]
    ncol = 3 + len(cols)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.22 * ncol, 1.95 * len(rows) + 1.4), squeeze=False,
                             gridspec_kw={"hspace": 0.62, "wspace": 0.12})
    heads = ["source", "oracle target", "edit mask"] + [f"{m}:\n{_wrap(METHOD_NAMES.get(meth, meth), 14)}" for m, meth in cols]
    for r, i in enumerate(rows):
        case = cases.iloc[i]
        show_tokens(axes[r, 0], grids["source"][i])
        show_tokens(axes[r, 1], grids["target"][i])
        show_mask(axes[r, 2], grids["mask"][i])
        axes[r, 0].text(0, 1.06, f"{case['type'].replace('_', ' ')}:  \"{case['source_prompt']}\"  \u2192  "
                        f"\"{case['target_prompt']}\"", transform=axes[r, 0].transAxes, fontsize=FONT, ha="left",
                        va="bottom", fontweight="bold")
        for c, (m, meth) in enumerate(cols, start=3):
            x = outputs[m][meth][i]
            show_tokens(axes[r, c], x)
            _parse_mark(axes[r, c], sb.matches_prompt(x, case["target_prompt"], sizes=True), label=True)
    for c, head in enumerate(heads):
        axes[0, c].set_title(head, fontsize=FONT, pad=22)
    fig.suptitle(title or "One test case per edit type on both models (frame and label: green \"parses\" = the exact "
                 "parser reads the edit as the target prompt, red \"no parse\" = it does not)", fontsize=FONT + 1, y=0.995)
    fig.subplots_adjust(left=0.02, right=0.99, top=1 - 1.3 / (1.95 * len(rows) + 1.4), bottom=0.03)
    return fig


def lambda_edits_figure(case: pd.Series, source: np.ndarray, target: np.ndarray, mask: np.ndarray, edits: np.ndarray,
                        table: pd.DataFrame, title: str | None = None) -> plt.Figure:
    """Return the walkthrough's edits over lambda, readable on its own: top row the source (its prompt), the
    oracle target (its prompt) and the edit mask; bottom row the edit at each lambda1 with its edit accuracy,
    preservation and whether it parses as the target prompt (green / red frame)."""
    n = len(edits)
    ncol = max(3, n)
    fig, axes = plt.subplots(2, ncol, figsize=(2.2 * ncol, 5.4), squeeze=False)
    show_tokens(axes[0, 0], source, f"source\n{_wrap(case['source_prompt'], 24)}", fontsize=9)
    show_tokens(axes[0, 1], target, f"oracle target\n{_wrap(case['target_prompt'], 24)}", fontsize=9)
    show_mask(axes[0, 2], mask, f"edit mask ({int(np.sum(mask))} px)", fontsize=9)
    for ax in axes[0, 3:]:
        ax.axis("off")
    for j, (x, (_, row)) in enumerate(zip(edits, table.iterrows())):
        ok = sb.matches_prompt(x, case["target_prompt"], sizes=True)
        show_tokens(axes[1, j], x, f"lambda1 = {row['lambda1']:g}\nacc {row['edit_accuracy']:.2f} · keep "
                    f"{row['preservation']:.2f}", fontsize=9)
        _parse_mark(axes[1, j], ok, label=True)
    for ax in axes[1, n:]:
        ax.axis("off")
    fig.suptitle(title or f"{case['type']}: DICE edits under the target prompt, lambda2 = 1 - lambda1 "
                 "(acc: in the mask vs the target; keep: outside it vs the source)", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.84, bottom=0.06, hspace=0.55, wspace=0.12)
    return fig


def reconstruction_figure(cases: pd.DataFrame, source: np.ndarray, outputs: dict[str, dict[str, np.ndarray]],
                          mismatch: dict[str, dict[str, float]], columns: tuple[str, ...]) -> plt.Figure:
    """Return one row per case, headed by its edit type and SOURCE prompt: the source, then per model each
    reconstruction of `columns` ("<method>/<pseudo_inverse>" or "regeneration"), each labelled "exact" or
    "N px differ" underneath; pixels that differ from the source are outlined red. A note says why `model`
    is not exact."""
    cols = [(m, k) for m in outputs for k in columns]
    ncol = 1 + len(cols)
    fig, axes = plt.subplots(len(cases), ncol, figsize=(1.3 * ncol, 2.0 * len(cases) + 2.0), squeeze=False,
                             gridspec_kw={"hspace": 0.7, "wspace": 0.12})
    for r in range(len(cases)):
        show_tokens(axes[r, 0], source[r])
        axes[r, 0].text(0, 1.06, f"{cases.iloc[r]['type'].replace('_', ' ')}:  \"{cases.iloc[r]['source_prompt']}\"",
                        transform=axes[r, 0].transAxes, fontsize=FONT, ha="left", va="bottom", fontweight="bold")
        for c, (m, k) in enumerate(cols, start=1):
            x = outputs[m][k][r]
            diff = np.asarray(x).reshape(sb.SIZE, sb.SIZE) != np.asarray(source[r]).reshape(sb.SIZE, sb.SIZE)
            show_tokens(axes[r, c], x)
            axes[r, c].set_xlabel("exact" if not diff.any() else f"{int(diff.sum())} px differ", fontsize=FONT,
                                  labelpad=2)
            ys, xs = np.nonzero(diff)
            if k != "regeneration":
                for y0, x0 in zip(ys, xs):
                    axes[r, c].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), 1, 1, fill=False, ec="red", lw=0.8))
            if diff.any() and k != "regeneration":
                _parse_mark(axes[r, c], False)
    for c, head in enumerate(["source"] + [f"{m}:\n{k.replace('/', ' /' + chr(10))}" for m, k in cols]):
        axes[0, c].set_title(head, fontsize=FONT, pad=22)
    rates = "; ".join(f"{m}: masked {v.get('masked/model', float('nan')):.1%}, multinomial "
                      f"{v.get('multinomial/model', float('nan')):.1%}" for m, v in mismatch.items())
    note = ("Reconstruction under the source prompt (lambda1 = 1, lambda2 = 0). onehot and lai latents are exact by "
            "construction. The model pseudo-inverse targets the model's own clean prediction argmax D(x0, t = 0, c), "
            "so it is exact only where that prediction equals the source; red squares mark the pixels where it is "
            f"not (pixels whose prediction differs, mismatch rate: {rates}). Regeneration keeps no latents.")
    fig.text(0.01, 0.005, _wrap(note, int(11 * 1.3 * ncol)), fontsize=FONT, va="bottom")
    fig.suptitle("ShapesBench reconstructions of test sources (each row headed by its source prompt)", fontsize=FONT + 2,
                 y=0.995)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 1.2 / (2.0 * len(cases) + 2.0),
                        bottom=1.3 / (2.0 * len(cases) + 2.0))
    return fig
