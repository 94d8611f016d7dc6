"""Text metrics (SPEC §6): hit rate, word-level structure, BLEU, the two sentiment judges and MiniLM STS offline."""

from __future__ import annotations

import numpy as np
import pytest

from dicelib.text import metrics as tm
from dicelib.errors import DiceError


def test_hit_rate_ignores_outer_spaces_only():
    assert tm.hit_rate([" The cat sat.", "A dog."], ["The cat sat.", "A dog!"]) == 0.5
    with pytest.raises(DiceError, match="references"):
        tm.hit_rate(["a"], [])


def test_word_similarity_is_word_level_levenshtein():
    assert tm.word_similarity("She felt anxious.", "She felt confident.") == pytest.approx(2 / 3)
    assert tm.word_similarity("It’s fine.", "It's fine") == 1.0  # punctuation and curly quotes ignored
    assert tm.word_similarity("a b c d", "") == 0.0
    assert tm.word_similarity("", "") == 1.0
    edits, sources = ["The client was thrilled.", "Nothing alike here at all."], ["The client was unimpressed."] * 2
    assert tm.structure_preservation(edits, sources, threshold=0.5) == 0.5
    assert tm.structure_preservation(edits, sources, threshold=0.8) == 0.0


def test_bleu_is_a_fraction():
    refs = ["The project was completed successfully.", "It was clear and engaging."]
    assert tm.bleu(refs, refs) == pytest.approx(1.0)
    assert 0.0 <= tm.bleu(["Completely different words here.", "Nothing matches."], refs) < 0.2


def test_vader_judge_reads_clear_sentiment_and_its_gold_accuracy():
    judge = tm.VaderJudge()
    assert judge.positive(["It was a wonderful, happy day."]).tolist() == [True]
    assert judge.positive(["It was a terrible, sad day."]).tolist() == [False]
    acc = tm.gold_accuracy(judge, ["I love it, it is great."], ["I hate it, it is awful."])
    assert acc == 1.0
    assert tm.sentiment_correctness(judge, ["Great!", "Awful."]) == 0.5


class _BagOfWords:
    """A deterministic stand-in for the sentence encoder (only to test the judge's plumbing fast)."""

    words = ["great", "good", "happy", "bad", "awful", "sad", "the", "day"]

    def encode(self, sentences, **_):
        v = np.array([[s.lower().count(w) for w in self.words] for s in sentences], dtype=np.float32) + 1e-3
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def get_sentence_embedding_dimension(self):
        return len(self.words)


def test_logreg_judge_and_embedding_cache():
    embed = tm.Embedder(model=_BagOfWords())
    judge = tm.MiniLMLogRegJudge(embed, ["a great day", "good and happy", "great great"],
                                 ["a bad day", "awful and sad", "bad bad"])
    assert judge.positive(["happy great day", "sad awful day"]).tolist() == [True, False]
    assert embed(["x", " x "]).shape == (2, 8) and len(embed._cache) > 0
    assert tm.sts(["a great day"], [" a great day "], embed) == pytest.approx(1.0, abs=1e-5)


def test_minilm_loads_offline_from_the_wheel():
    embed = tm.Embedder()  # HF_HUB_OFFLINE=1 (conftest): any download attempt would fail
    same = tm.sts(["The buses are punctual."], ["The buses are punctual."], embed)
    close = tm.sts(["The buses are punctual."], ["The buses arrive on time."], embed)
    far = tm.sts(["The buses are punctual."], ["I baked a chocolate cake."], embed)
    assert same == pytest.approx(1.0, abs=1e-4)
    assert far < close < same
    assert embed(["x"]).shape == (1, 384)


def test_structure_score_keeps_words_or_meaning_and_its_threshold_is_calibrated():
    embed = tm.Embedder(model=_BagOfWords())
    sources = ["the day was bad", "a sad day", "bad bad day", "the awful day", "a bad and sad day"]
    gold = ["the day was great", "a happy day", "good good day", "the great day", "a good and happy day"]
    scores = tm.structure_scores(gold, sources, embed)
    words_kept = np.array([tm.word_similarity(g, s) for g, s in zip(gold, sources)])
    assert (scores >= words_kept).all() and scores[0] == pytest.approx(0.75)  # 3 of 4 words kept
    other = tm.other_pair_sentences(gold, seed=0)
    assert all(o != g for o, g in zip(other, gold)) and set(other) <= set(gold)
    assert other == tm.other_pair_sentences(gold, seed=0)
    calib = tm.calibrate_structure(sources, gold, embed, seed=0, other_rate=0.2)
    assert calib["other_rate"] <= 0.2  # by construction, on the calibration split
    assert tm.structure_rates(sources, gold, embed, calib["threshold"], seed=0) == {
        "gold_rate": calib["gold_rate"], "other_rate": calib["other_rate"]}
    assert tm.structure_kept(sources, sources, embed, calib["threshold"]).all()  # an unchanged sentence keeps it
    with pytest.raises(DiceError, match="at least 2"):
        tm.other_pair_sentences(["one"], seed=0)


def test_bootstrap_interval_covers_the_mean_and_is_seeded():
    values = np.r_[np.ones(30), np.zeros(70)]
    lo, hi = tm.bootstrap_ci(values, seed=0)
    assert lo < 0.3 < hi and 0.15 < lo and hi < 0.45
    assert tm.bootstrap_ci(values, seed=0) == (lo, hi)
    assert tm.bootstrap_ci(np.ones(5), seed=0) == (1.0, 1.0)
