"""Sentiment Editing data and its split, the from-scratch baseline, and the batched invert/edit runner of notebook 05."""

from __future__ import annotations

import json

import pytest
import torch

from dicelib.text import sentiment_data
from dicelib.text import editing as text_editing
from dicelib.text import baseline as text_model
from dicelib.adapters import MaskedLM
from dicelib.errors import DiceError
from .pairs import PAIRS
from dicelib.text.model import FOLDER, is_text_folder



TEXTS = [t for p in PAIRS for t in (p.neg_context, p.neg_content, p.pos_context, p.pos_content)]


@pytest.fixture(scope="module")
def tiny_lm() -> MaskedLM:
    vocab, merges = text_model.train_tokenizer(TEXTS, 300)
    torch.manual_seed(0)
    model = text_model.build_model(len(vocab), 16, 1, 2, 32, 64, 0.0)
    lm = MaskedLM(model, text_model.build_tokenizer(vocab, merges), name="tiny")
    lm.vocab, lm.merges = vocab, merges
    return lm


def test_vendored_data_has_licence_source_and_765_pairs():
    folder = sentiment_data.DATASET_DIR
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert "hexiaoxiao-cs/DICE" in (folder / "SOURCE.md").read_text()
    pairs = sentiment_data.load_raw()
    assert len(pairs) == 765 and pairs[0].neg_context.startswith("Negative Sentiment:")
    assert all(p.pos_context.startswith("Positive Sentiment:") for p in pairs)


def test_split_is_fixed_and_disjoint_by_pair_and_by_sentence():
    pairs = sentiment_data.load_raw()
    split = sentiment_data.make_split(pairs, 0.2, seed=0, val_fraction=0.1)
    assert split == sentiment_data.make_split(pairs, 0.2, seed=0, val_fraction=0.1)
    assert split != sentiment_data.make_split(pairs, 0.2, seed=1, val_fraction=0.1)
    assert sentiment_data.make_split(pairs, 0.2, seed=0)["test"] == split["test"]  # carving val leaves test as it was
    names = ("train", "val", "test")
    ids = {n: set(split[n]) for n in names}
    assert sum(len(v) for v in ids.values()) == 765 and set().union(*ids.values()) == {p.id for p in pairs}
    assert abs(len(ids["test"]) - 153) <= 3 and abs(len(ids["val"]) - 77) <= 3
    by_id = {p.id: p for p in pairs}
    sentences = {n: {s for i in ids[n] for s in (by_id[i].neg_content.strip(), by_id[i].pos_content.strip())}
                 for n in names}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not ids[a] & ids[b], (a, b)  # by pair
        assert not sentences[a] & sentences[b], (a, b)  # by sentence: no test sentence was trained on or tuned on
    committed = json.loads(sentiment_data.SPLIT.read_text())
    assert all(committed[n] == split[n] for n in names), "rerun `dvc repro text-data`"
    assert [p.id for p in sentiment_data.load_pairs("val")] == split["val"]
    with pytest.raises(DiceError, match="val_fraction"):
        sentiment_data.make_split(pairs, 0.2, seed=0, val_fraction=0.9)
    with pytest.raises(DiceError, match="test_fraction"):
        sentiment_data.make_split(pairs, 1.5, seed=0)
    with pytest.raises(DiceError, match="split"):
        sentiment_data.load_pairs("validation")


def test_settings_are_chosen_on_val_and_train_only():
    """Notebook 05 calibrates on train, sweeps lambda on val and reports on test; the choice reads only the val sweep."""
    import pandas as pd

    from dicelib.text import report

    source = "".join("".join(c["source"]) for c in json.loads(
        (sentiment_data.ROOT / "notebooks/05-text-editing.ipynb").read_text())["cells"])
    assert 'structure_table({"train": train_pairs, "val": val, "test": pairs}' in source
    assert "text_report.fit_judges(embed, train_pairs)" in source
    assert "text_editing.sweep_pairs(lm, val," in source and "choose_lambda(sweep_table)" in source
    sweep = pd.DataFrame({"pseudo_inverse": ["lai"] * 3, "lambda1": [0.2, 0.5, 0.9],
                          "success_minilm_logreg": [0.3, 0.6, 0.6], "structure": [0.2, 0.9, 0.9]})
    assert report.choose_lambda(sweep) == {"lai": 0.9}  # ties: higher structure, then larger lambda1
    runs = text_editing.test_settings([0.2, 0.8], [0.25, 0.75], {"lai": 0.9}, ["lai"])
    assert runs == {"dice_lai_set1": ("lai", 0.2, 0.8), "dice_lai_set2": ("lai", 0.25, 0.75),
                    "dice_lai_val": ("lai", 0.9, None), "masked_generation": ("lai", 0.0, 1.0)}


def test_baseline_tokenizer_round_trips_text():
    vocab, merges = text_model.train_tokenizer([p.neg_content for p in PAIRS], 300)
    assert text_model.train_tokenizer([p.neg_content for p in PAIRS], 300) == (vocab, merges)  # deterministic
    tok = text_model.build_tokenizer(vocab, merges)
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == text_model.SPECIAL_TOKENS
    unseen = " Zebras queue politely, don’t they?"  # byte-level: any text encodes and decodes exactly
    assert tok.decode(tok(unseen, add_special_tokens=False)["input_ids"]) == unseen


def test_runner_reconstructs_every_length_group_in_order(tiny_lm):
    out = text_editing.reconstruct_pairs(tiny_lm, PAIRS, steps=6, seed=0, progress=False)
    assert set(out) == {"source", "dice_onehot", "dice_lai", "masked_generation"}
    assert len(text_editing.group_by_length(tiny_lm, [p.neg_content for p in PAIRS])) >= 2
    assert out["source"] == [p.neg_content.strip() for p in PAIRS]
    assert out["dice_onehot"] == out["source"] and out["dice_lai"] == out["source"]
    assert out["masked_generation"] != out["source"]


def test_runs_are_seeded_independently(tiny_lm):
    settings = {"set1": (0.2, 0.8), "masked_generation": (0.0, 1.0)}
    a = text_editing.edit_pairs(tiny_lm, PAIRS, settings, tau=0.7, steps=6, seed=3, progress=False)
    b = text_editing.edit_pairs(tiny_lm, PAIRS, {"set1": (0.2, 0.8)}, tau=0.7, steps=6, seed=3, progress=False)
    assert a["set1"] == b["set1"]  # adding a run does not change another run's output
    assert text_editing.run_seed(3, "set1") == text_editing.run_seed(3, "set1") != text_editing.run_seed(3, "set2")
    assert text_editing.sweep_settings([0.0, 0.7]) == {"sweep_0": (0.0, None), "sweep_0.7": (0.7, None)}  # 1 - lambda1
    c = text_editing.edit_pairs(tiny_lm, PAIRS, {"set1": (0.2, 0.8)}, tau=0.7, steps=6, seed=3, progress=False,
                                store="float32", max_batch=2)
    assert c["set1"] == a["set1"]  # store and batching change memory, not edits
    with pytest.raises(DiceError, match="runs"):
        text_editing.invert_and_edit(tiny_lm, ["a"], [" b."], ["c"], {}, tau=0.7)


@pytest.mark.skipif(not is_text_folder(FOLDER), reason="run `dvc repro train-text` first")
def test_committed_text_model_reconstructs_test_sentences_exactly():
    lm = text_editing.load_masked_lm("text")
    assert lm.name == "text" and lm.num_classes > 30000
    pairs = sentiment_data.load_pairs("test")[:8]
    out = text_editing.reconstruct_pairs(lm, pairs, pseudo_inverses=("onehot",), steps=8, seed=0, progress=False)
    assert out["dice_onehot"] == text_editing.as_model_writes(lm, [p.neg_content for p in pairs])
