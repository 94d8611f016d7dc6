"""Figures read at their saved size: no text under 9 pt, no label printed over another, legends in words."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from dicelib.image import plotting, shapesbench as sb  # noqa: E402
from dicelib.text import report as text_report  # noqa: E402

TYPES = ["overall", *sb.EDIT_TYPES]


def _texts(fig: plt.Figure) -> list[matplotlib.text.Text]:
    fig.canvas.draw()
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


def _assert_readable(fig: plt.Figure) -> None:
    small = sorted({(t.get_text()[:30], t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < plotting.FONT})
    plt.close(fig)
    assert not small, f"text under {plotting.FONT} pt: {small}"


def _scores(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    out = {}
    for col in ("edit_accuracy", "preservation", "edit_score", "exact_parse"):
        v = rng.uniform(0.2, 0.9, n)
        out |= {col: v, f"{col}_lo": v - 0.1, f"{col}_hi": v + 0.1}
    return out


def test_comparison_figure_is_readable_and_draws_a_zero_bar():
    rng = np.random.default_rng(0)
    methods = list(plotting.METHOD_NAMES)
    rows = list(itertools.product(["oracle", "learned"], methods, TYPES))
    final = pd.DataFrame(rows, columns=["model", "method", "type"]).assign(**_scores(rng, len(rows)))
    final.loc[final["method"] == "dice", "exact_parse"] = 0.0
    fig = plotting.comparison_figure(final)
    ax = fig.axes[-1]  # learned model, exact parse: every DICE bar is 0
    dashes = [line for line in ax.get_lines() if line.get_linewidth() >= 3 and np.allclose(line.get_ydata(), 0.008)]
    assert len(dashes) == len(TYPES)  # one visible dash per zero bar
    _assert_readable(fig)


@pytest.mark.parametrize("label, values", [("lambda", [0.5, 0.7, 0.9]), ("injection", ["add", "variance_preserving"])])
def test_tradeoff_grid_names_values_in_a_legend_not_on_the_points(label, values):
    rng = np.random.default_rng(1)
    rows = list(itertools.product(["oracle", "learned"], values, TYPES))
    df = pd.DataFrame(rows, columns=["model", label, "type"]).assign(**_scores(rng, len(rows)))
    fig = plotting.tradeoff_grid(df, label)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [f"DICE, {plotting.SWEEP_NAMES[label]} = {plotting.VALUE_NAMES.get(v, f'{v:g}' if isinstance(v, float) else v)}"
                      for v in values]
    assert not any(ax.texts for ax in fig.axes)  # no value printed on a point
    assert all("_" not in t for t in legend)
    _assert_readable(fig)


def test_examples_figure_marks_parses_in_words_and_is_readable():
    side = sb.SIZE
    cases = pd.DataFrame({"type": ["change_colour"], "source_prompt": ["a small red circle on a blue background"],
                          "target_prompt": ["a small green circle on a blue background"]})
    grids = {"source": np.zeros((1, side, side), int), "target": np.ones((1, side, side), int),
             "mask": np.ones((1, side, side), bool)}
    outputs = {"oracle": {"dice": grids["source"], "regeneration": grids["source"]}}
    fig = plotting.examples_figure(cases, grids, outputs, np.array([0]))
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    assert labels == ["no parse", "no parse"]
    _assert_readable(fig)


def test_text_sweep_figure_has_no_overprinted_labels_and_a_legend_in_words():
    lambdas = [0.02, 0.05, 0.1, 0.2, 0.5, 0.8]
    sweep = pd.DataFrame({"pseudo_inverse": ["onehot"] * 6 + ["lai"] * 6, "lambda1": lambdas * 2,
                          "structure": [0.34, 0.64, 1, 1, 1, 1, 0.24, 0.26, 0.29, 0.38, 0.58, 0.47],
                          "sentiment_minilm_logreg": [0.92, 0.87, 0.39, 0.013, 0, 0, 0.97, 0.93, 0.96, 0.99, 0.99, 0.99]})
    names = ["dice_lai_val", "dice_onehot_val", "masked_generation", "gold_positive"]
    editing = pd.DataFrame({"setting": names, "structure": [0.54, 0.73, 0.24, 0.83],
                            "sentiment_minilm_logreg": [0.98, 0.9, 0.88, 0.97]})
    for col in ("structure", "sentiment_minilm_logreg"):
        editing[f"{col}_lo"], editing[f"{col}_hi"] = editing[col] - 0.05, editing[col] + 0.05
    fig = text_report.sweep_figure(sweep, editing)
    labels = [t for t in fig.axes[0].texts]
    boxes = [t.get_window_extent() for t in labels]
    assert sorted(float(v) for t in labels for v in t.get_text().split(", ")) == sorted(lambdas * 2)  # every lambda1 named
    assert not [(a.get_text(), b.get_text()) for (a, x), (b, y) in itertools.combinations(zip(labels, boxes), 2)
                if x.overlaps(y)]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert not [t for t in legend if "_" in t], legend
    assert fig.get_size_inches()[0] * 100 < 1500  # fits a laptop screen at 100 %
    _assert_readable(fig)
