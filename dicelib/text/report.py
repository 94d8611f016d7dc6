"""Return the tables, metrics dict and figure of notebook 05 (paper Tables 4, 5, 6 for text).

Tables print fractions ×10², as the paper does; `summary` keeps fractions in [0, 1] for
`reports/metrics/text_editing.json`. Editing rows are scored against the negative source
(structure preservation), the judges (sentiment correctness: the share read as positive), both at
once (success: structure kept and read positive, as the paper's judge was asked of one sentence)
and the gold positive sentence (BLEU, STS). A `gold_positive` row scores the gold sentences
themselves the same way, so every editing number has its reference beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..core.settings import resolve_lambda2
from .sentiment_data import SentimentPair
from .metrics import (Embedder, MiniLMLogRegJudge, VaderJudge, bleu, gold_accuracy, hit_rate,
                      sentiment_correctness, sts, structure_preservation, word_similarity)

SCALE = 100.0  # the paper prints text metrics ×10²


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


def reconstruction_table(outputs: dict[str, list[str]], embed: Embedder) -> pd.DataFrame:
    """Return hit rate and STS of every reconstruction run against `outputs["source"]` (Table 4)."""
    source = outputs["source"]
    rows = [{"method": name, "hit_rate": hit_rate(text, source), "sts": sts(text, source, embed)}
            for name, text in outputs.items() if name != "source"]
    return pd.DataFrame(rows)


def editing_table(edits: dict[str, list[str]], pairs: list[SentimentPair], settings: dict[str, tuple[float, float | None]],
                  judges: dict[str, Any], embed: Embedder, threshold: float) -> pd.DataFrame:
    """Return structure preservation, per-judge sentiment correctness, BLEU and STS of every edit run (Table 5)."""
    source = [p.neg_content for p in pairs]
    gold = [p.pos_content for p in pairs]
    runs = {name: text for name, text in edits.items() if name != "source"}
    runs["gold_positive"] = gold
    rows = []
    for name, text in runs.items():
        l1, l2 = settings.get(name, (float("nan"), float("nan")))
        row = {"setting": name, "lambda1": l1, "lambda2": resolve_lambda2(l1, l2),
               "structure_preservation": structure_preservation(text, source, threshold),
               "word_similarity": float(sum(word_similarity(t, s) for t, s in zip(text, source)) / len(text))}
        row.update({f"sentiment_{j}": sentiment_correctness(judge, text) for j, judge in judges.items()})
        # the paper's judge asked both questions of the same sentence: a salad of positive words is no edit
        kept = np.array([word_similarity(t, s) >= threshold for t, s in zip(text, source)])
        row.update({f"success_{j}": float((kept & judge.positive(text)).mean()) for j, judge in judges.items()})
        row.update({"bleu": bleu(text, gold), "sts": sts(text, gold, embed), "sts_source": sts(text, source, embed),
                    "unchanged": hit_rate(text, source)})
        rows.append(row)
    return pd.DataFrame(rows)


def scaled(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with the metric columns ×10² (as the paper prints them), lambdas untouched."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f" and not col.startswith("lambda"):
            out[col] = (out[col] * SCALE).round(2)
    return out


def examples_table(pairs: list[SentimentPair], edits: dict[str, list[str]], columns: list[str], n: int) -> pd.DataFrame:
    """Return n examples (Table 6): negative prompt and sentence, the edits of `columns`, the gold positive."""
    step = max(1, len(pairs) // max(1, n))
    rows = []
    for i in list(range(0, len(pairs), step))[:n]:
        p = pairs[i]
        row = {"negative_context": p.neg_context, "negative": p.neg_content.strip(),
               "positive_context": p.pos_context}
        row.update({f"edit_{c}": edits[c][i] for c in columns})
        row["gold_positive"] = p.pos_content.strip()
        rows.append(row)
    return pd.DataFrame(rows)


def summary(recon: pd.DataFrame, editing: pd.DataFrame, judges: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Return the `text_editing.json` metrics (fractions): reconstruction, editing per judge, judges' gold accuracy."""
    rec = {r.method: {"hit_rate": float(r.hit_rate), "sts": float(r.sts)} for r in recon.itertuples()}
    judge_names = list(judges.judge)
    edit = {}
    for r in editing.to_dict("records"):
        edit[r["setting"]] = {
            "lambda1": r["lambda1"], "lambda2": r["lambda2"],
            "structure_preservation": float(r["structure_preservation"]),
            "sentiment_correctness": {j: float(r[f"sentiment_{j}"]) for j in judge_names},
            "success": {j: float(r[f"success_{j}"]) for j in judge_names},  # structure kept and read positive
            "bleu": float(r["bleu"]), "sts": float(r["sts"]),
        }
    return {
        "reconstruction": rec,
        "editing": edit,
        "judges": {r.judge: {"gold_accuracy": float(r.gold_accuracy)} for r in judges.itertuples()},
        "settings": meta,
    }


def sweep_figure(editing: pd.DataFrame, judge: str = "minilm_logreg") -> Any:
    """Return a figure of structure preservation vs sentiment correctness over the lambda sweep."""
    import matplotlib.pyplot as plt

    sweep = editing[editing.setting.str.startswith("sweep_")].sort_values("lambda1")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(sweep[f"sentiment_{judge}"] * SCALE, sweep.structure_preservation * SCALE, "o-", label="DICE, λ2 = 1 - λ1")
    for r in sweep.itertuples():
        ax.annotate(f"λ1={r.lambda1:g}", (getattr(r, f"sentiment_{judge}") * SCALE, r.structure_preservation * SCALE),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    for name, marker in (("set1", "s"), ("set2", "D"), ("masked_generation", "x"), ("gold_positive", "*")):
        row = editing[editing.setting == name]
        if len(row):
            ax.plot(row[f"sentiment_{judge}"] * SCALE, row.structure_preservation * SCALE, marker, ms=9, label=name)
    ax.set_xlabel(f"sentiment correctness ×10² ({judge})")
    ax.set_ylabel("structure preservation ×10²")
    ax.set_title("Sentiment editing: lambda sweep (tau fixed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
