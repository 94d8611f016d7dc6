"""Return the tables, headline metrics and figure of notebook 05 (paper Tables 4, 5, 6 for text).

Tables print fractions ×10², as the paper does, each metric with its 95 % bootstrap interval over
pairs (`_lo`, `_hi`); `headline` keeps a few dozen flat fractions for
`reports/metrics/text_editing.json`. Editing rows are scored against the negative source
(structure preservation: `metrics.structure_kept` at the threshold calibrated on the train split),
by both judges (sentiment correctness: the share read as positive), both at once (success:
structure kept and read positive, as the paper's judge was asked of one sentence) and against the
gold positive sentence as the model writes it (BLEU, STS). A `gold_positive` row scores the gold
sentences themselves the same way, so every editing number has its reference beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..core.settings import resolve_lambda2
from .metrics import (Embedder, MiniLMLogRegJudge, VaderJudge, bleu, bootstrap_ci, calibrate_structure, gold_accuracy,
                      structure_kept, structure_rates)
from .sentiment_data import SentimentPair

SCALE = 100.0  # the paper prints text metrics ×10²
BLEU_RESAMPLES = 200  # corpus BLEU is recomputed per resample: fewer than the per-sentence metrics' 1000


def fit_judges(embed: Embedder, train_pairs: list[SentimentPair]) -> dict[str, Any]:
    """Return {"vader": VaderJudge, "minilm_logreg": logistic regression fitted on the train pairs}."""
    return {
        "vader": VaderJudge(),
        "minilm_logreg": MiniLMLogRegJudge(embed, [p.pos_content for p in train_pairs],
                                           [p.neg_content for p in train_pairs]),
    }


def judge_table(judges: dict[str, Any], pairs: list[SentimentPair]) -> pd.DataFrame:
    """Return each judge's accuracy on the gold test sentences (both sentiments), and per sentiment."""
    pos, neg = [p.pos_content for p in pairs], [p.neg_content for p in pairs]
    rows = []
    for name, judge in judges.items():
        rows.append({"judge": name, "gold_accuracy": gold_accuracy(judge, pos, neg),
                     "positive_read_positive": float(judge.positive(pos).mean()),
                     "negative_read_negative": float((~judge.positive(neg)).mean())})
    return pd.DataFrame(rows)


def structure_table(splits: dict[str, list[SentimentPair]], embed: Embedder, seed: int) -> tuple[float, pd.DataFrame]:
    """Return (threshold calibrated on splits["train"], its gold and other-pair pass rates on every split)."""
    def sg(pairs: list[SentimentPair]) -> tuple[list[str], list[str]]:
        return [p.neg_content for p in pairs], [p.pos_content for p in pairs]

    calib = calibrate_structure(*sg(splits["train"]), embed, seed)
    rows = [{"split": name, "threshold": calib["threshold"], **structure_rates(*sg(pairs), embed, calib["threshold"], seed)}
            for name, pairs in splits.items()]
    return calib["threshold"], pd.DataFrame(rows)


def _with_ci(row: dict[str, Any], name: str, values: np.ndarray, seed: int) -> None:
    row[name] = float(np.mean(values))
    row[f"{name}_lo"], row[f"{name}_hi"] = bootstrap_ci(values, seed)


def reconstruction_table(outputs: dict[str, list[str]], embed: Embedder, seed: int) -> pd.DataFrame:
    """Return hit rate and STS (with intervals) of every reconstruction run against `outputs["source"]` (Table 4)."""
    source = outputs["source"]
    rows = []
    for name, text in outputs.items():
        if name == "source":
            continue
        row: dict[str, Any] = {"method": name}
        _with_ci(row, "hit_rate", np.array([a.strip() == b.strip() for a, b in zip(text, source)], dtype=float), seed)
        _with_ci(row, "sts", np.sum(embed(text) * embed(source), axis=1), seed)
        rows.append(row)
    return pd.DataFrame(rows)


def _bleu_ci(text: list[str], gold: list[str], seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(BLEU_RESAMPLES):
        idx = rng.integers(0, len(text), size=len(text))
        scores.append(bleu([text[i] for i in idx], [gold[i] for i in idx]))
    lo, hi = np.quantile(scores, [0.025, 0.975])
    return float(lo), float(hi)


def score_edits(text: list[str], source: list[str], gold: list[str], judges: dict[str, Any], embed: Embedder,
                threshold: float, seed: int, intervals: bool = True) -> dict[str, Any]:
    """Return one editing row: structure, per-judge sentiment and success, BLEU and STS vs gold (with intervals)."""
    row: dict[str, Any] = {}
    kept = structure_kept(text, source, embed, threshold).astype(float)
    metric = (lambda name, v: _with_ci(row, name, v, seed)) if intervals else (
        lambda name, v: row.__setitem__(name, float(np.mean(v))))
    metric("structure", kept)
    for j, judge in judges.items():
        metric(f"sentiment_{j}", judge.positive(text).astype(float))
    for j, judge in judges.items():  # the paper's judge asked both questions of one sentence: salad is no edit
        metric(f"success_{j}", kept * judge.positive(text))
    row["bleu"] = bleu(text, gold)
    if intervals:
        row["bleu_lo"], row["bleu_hi"] = _bleu_ci(text, gold, seed)
    metric("sts", np.sum(embed(text) * embed(gold), axis=1))
    row["unchanged"] = float(np.mean([a.strip() == b.strip() for a, b in zip(text, source)]))
    return row


def editing_table(edits: dict[str, list[str]], gold: list[str], runs: dict[str, tuple[str, float, float | None]],
                  judges: dict[str, Any], embed: Embedder, threshold: float, seed: int) -> pd.DataFrame:
    """Return the Table 5 analog: every run of `edits` (and the gold positive sentences) scored by `score_edits`.

    edits: {"source": the negative sentences as the model reads them, run name: edits}; gold: the
    gold positive sentences as the model writes them; runs: name -> (pseudo-inverse, lambda1, lambda2).
    """
    source = edits["source"]
    rows = []
    for name, text in [*((n, t) for n, t in edits.items() if n != "source"), ("gold_positive", gold)]:
        pi, l1, l2 = runs.get(name, ("", float("nan"), float("nan")))
        rows.append({"setting": name, "pseudo_inverse": pi, "lambda1": l1, "lambda2": resolve_lambda2(l1, l2),
                     **score_edits(text, source, gold, judges, embed, threshold, seed)})
    return pd.DataFrame(rows)


def sweep_table(sweeps: dict[str, dict[str, list[str]]], gold: list[str], judges: dict[str, Any], embed: Embedder,
                threshold: float, seed: int) -> pd.DataFrame:
    """Return the val sweep: one row per (pseudo-inverse, lambda1) with structure, sentiment and success (no intervals)."""
    rows = []
    for pi, out in sweeps.items():
        for name, text in out.items():
            if name == "source":
                continue
            l1 = float(name.removeprefix("sweep_"))
            rows.append({"pseudo_inverse": pi, "lambda1": l1, "lambda2": resolve_lambda2(l1, None),
                         **score_edits(text, out["source"], gold, judges, embed, threshold, seed, intervals=False)})
    return pd.DataFrame(rows)


def choose_lambda(sweep: pd.DataFrame, judge: str = "minilm_logreg") -> dict[str, float]:
    """Return {pseudo-inverse: the lambda1 with the highest success on val} (ties: higher structure, then larger lambda1)."""
    out = {}
    for pi, rows in sweep.groupby("pseudo_inverse", sort=False):
        best = rows.sort_values([f"success_{judge}", "structure", "lambda1"], ascending=False).iloc[0]
        out[str(pi)] = float(best.lambda1)
    return out


def sweep_plot_data(sweep: pd.DataFrame, judge: str = "minilm_logreg") -> pd.DataFrame:
    """Return the val sweep wide by pseudo-inverse: lambda1, then structure / sentiment / success per pseudo-inverse."""
    cols = {"structure": "structure", f"sentiment_{judge}": "sentiment", f"success_{judge}": "success"}
    wide = None
    for pi, rows in sweep.groupby("pseudo_inverse", sort=False):
        part = rows.set_index("lambda1")[list(cols)].rename(columns={c: f"{v}_{pi}" for c, v in cols.items()})
        wide = part if wide is None else wide.join(part, how="outer")
    return wide.reset_index().sort_values("lambda1") if wide is not None else pd.DataFrame()


def scaled(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with the metric columns ×10² (as the paper prints them), lambdas and thresholds untouched."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f" and not col.startswith("lambda") and col != "threshold":
            out[col] = (out[col] * SCALE).round(2)
    return out


def examples_table(pairs: list[SentimentPair], edits: dict[str, list[str]], columns: list[str], n: int) -> pd.DataFrame:
    """Return n examples (Table 6): negative prompt and sentence, the edits of `columns`, the gold positive."""
    step = max(1, len(pairs) // max(1, n))
    rows = []
    for i in list(range(0, len(pairs), step))[:n]:
        p = pairs[i]
        row = {"positive_context": p.pos_context, "negative": p.neg_content.strip()}
        row.update({c: edits[c][i] for c in columns})
        row["gold_positive"] = p.pos_content.strip()
        rows.append(row)
    return pd.DataFrame(rows)


HEADLINE_RUNS = ("dice_lai_val", "dice_onehot_val", "dice_lai_set1", "masked_generation")
HEADLINE_COLUMNS = {"structure": "structure", "sentiment_minilm_logreg": "sentiment_minilm",
                    "sentiment_vader": "sentiment_vader", "success_minilm_logreg": "success_minilm",
                    "bleu": "bleu", "sts": "sts"}


def headline(recon: pd.DataFrame, editing: pd.DataFrame, judges: pd.DataFrame, structure: pd.DataFrame,
             chosen: dict[str, float], meta: dict[str, Any]) -> dict[str, Any]:
    """Return the flat summary of notebook 05 (reports/tables/text_summary.csv): a few dozen fractions."""
    out: dict[str, Any] = dict(meta)
    for r in recon.itertuples():
        out[f"recon_{r.method}_hit_rate"] = round(float(r.hit_rate), 6)
        out[f"recon_{r.method}_sts"] = round(float(r.sts), 6)
    for r in judges.itertuples():
        out[f"judge_{r.judge}_gold_accuracy"] = round(float(r.gold_accuracy), 6)
    out["structure_threshold"] = round(float(structure.threshold.iloc[0]), 6)
    for r in structure.itertuples():
        if r.split in ("train", "test"):
            out[f"structure_{r.split}_gold_rate"] = round(float(r.gold_rate), 6)
            out[f"structure_{r.split}_other_rate"] = round(float(r.other_rate), 6)
    for pi, l1 in chosen.items():
        out[f"val_lambda1_{pi}"] = l1
    rows = editing.set_index("setting")
    for run in HEADLINE_RUNS:
        if run in rows.index:
            for col, short in HEADLINE_COLUMNS.items():
                out[f"{run}_{short}"] = round(float(rows.loc[run, col]), 6)
    return out


def headline_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Return the small `text_editing.json` that `dvc metrics show` compares across runs: DICE with LAI latents at
    the lambda1 the val split chose, on test: `preservation` (the source's structure kept) and `edit_score` (success:
    the MiniLM judge reads the target sentiment and the structure is kept), the image track's column names for the
    text's kept share and overall score. The sentiment accuracy alone is in the summary table
    (`dice_lai_val_sentiment_minilm`): under `accuracy` it would share a key with the text models' masked-word
    accuracy, and a column of its own would widen `dvc metrics show` past 120 columns."""
    return {"preservation": summary["dice_lai_val_structure"], "edit_score": summary["dice_lai_val_success_minilm"]}


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Return the flat summary as rows (metric, value): reports/tables/text_summary.csv."""
    return pd.DataFrame({"metric": list(summary), "value": [str(v) for v in summary.values()]})


SETTING_NAMES = {  # editing_table's settings and pseudo-inverses in words, for legends
    "dice_lai_val": "DICE, LAI latents, lambda1 chosen on val",
    "dice_onehot_val": "DICE, one-hot latents, lambda1 chosen on val",
    "masked_generation": "masked generation (no latents)",
    "gold_positive": "gold positive sentence",
    "lai": "LAI latents", "onehot": "one-hot latents", "model": "model latents",
}
JUDGE_NAMES = {"minilm_logreg": "MiniLM judge", "vader": "VADER judge"}
FONT = 9  # the smallest text of the saved figure, in points


def _label_groups(xs: list[float], ys: list[float], values: list[float], near: tuple[float, float]) -> list[tuple[float, float, str]]:
    """Return (x, y, text) labels for a curve's points, points closer than `near` (x, y) sharing one label
    ("0.2, 0.5, 0.8"), so no two labels print over each other."""
    labels: list[list] = []
    for x, y, v in zip(xs, ys, values):
        for lab in labels:
            if abs(lab[0] - x) < near[0] and abs(lab[1] - y) < near[1]:
                lab[2].append(v)
                break
        else:
            labels.append([x, y, [v]])
    return [(x, y, ", ".join(f"{v:g}" for v in sorted(vs))) for x, y, vs in labels]


def sweep_figure(sweep: pd.DataFrame, editing: pd.DataFrame, judge: str = "minilm_logreg") -> Any:
    """Return a figure: structure vs sentiment (judge) over the val lambda sweep per pseudo-inverse (each point
    labelled with its lambda1; nearby points share a label), test runs marked, the legend in words."""
    import matplotlib.pyplot as plt

    judge_name = JUDGE_NAMES.get(judge, judge)
    fig, ax = plt.subplots(figsize=(8, 5.6))
    for pi, rows in sweep.groupby("pseudo_inverse", sort=False):
        rows = rows.sort_values("lambda1")
        xs, ys = list(rows[f"sentiment_{judge}"] * SCALE), list(rows.structure * SCALE)
        line = ax.plot(xs, ys, "o-", label=f"DICE, {SETTING_NAMES.get(pi, pi)}: val sweep (labels: lambda1)")[0]
        for x, y, text in _label_groups(xs, ys, list(rows.lambda1), near=(7.0, 4.0)):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=FONT, color=line.get_color())
    for name, marker in (("dice_lai_val", "s"), ("dice_onehot_val", "D"), ("masked_generation", "X"),
                         ("gold_positive", "*")):
        row = editing[editing.setting == name]
        if len(row):
            x, y = float(row[f"sentiment_{judge}"].iloc[0]) * SCALE, float(row.structure.iloc[0]) * SCALE
            xerr = [[x - float(row[f"sentiment_{judge}_lo"].iloc[0]) * SCALE],
                    [float(row[f"sentiment_{judge}_hi"].iloc[0]) * SCALE - x]]
            yerr = [[y - float(row.structure_lo.iloc[0]) * SCALE], [float(row.structure_hi.iloc[0]) * SCALE - y]]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, ms=9, capsize=3,
                        label=f"{SETTING_NAMES.get(name, name)} (test, 95 % interval)")
    ax.set_xlabel(f"sentiment correct (read as positive by the {judge_name}) ×10²", fontsize=FONT + 1)
    ax.set_ylabel("structure kept ×10²", fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    ax.set_xlim(-3, 108)
    ax.set_ylim(min(10.0, ax.get_ylim()[0]), 106)
    ax.grid(alpha=0.3)
    ax.set_title("Sentiment editing: lambda1 sweep on val, and the test runs", fontsize=FONT + 2)
    ax.legend(fontsize=FONT, loc="lower left")
    fig.tight_layout()
    return fig
