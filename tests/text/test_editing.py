"""Sentiment Editing data, the `text` model's checkpoint, and the batched invert/edit runner of notebook 05."""

from __future__ import annotations

import json

import pytest
import torch

from dicelib.text import sentiment_data
from dicelib.text import editing as text_editing
from dicelib.text import model as text_model
from dicelib.adapters import MaskedLM
from dicelib.errors import DiceError
from dicelib.text.sentiment_data import SentimentPair
from dicelib.text.model import CHECKPOINT

PAIRS = [
    SentimentPair(0, "Negative Sentiment: After the test.", " She felt anxious.",
                  "Positive Sentiment: After the test.", " She felt confident."),
    SentimentPair(1, "Negative Sentiment: Regarding the lecture.", " It was dull and confusing.",
                  "Positive Sentiment: Regarding the lecture.", " It was clear and engaging."),
    SentimentPair(2, "Negative Sentiment: At the airport.", " The flight was delayed.",
                  "Positive Sentiment: At the airport.", " The flight was on time."),
]


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


def test_split_is_fixed_disjoint_and_keeps_duplicate_sentences_together():
    pairs = sentiment_data.load_raw()
    split = sentiment_data.make_split(pairs, 0.2, seed=0)
    assert split == sentiment_data.make_split(pairs, 0.2, seed=0)
    assert split != sentiment_data.make_split(pairs, 0.2, seed=1)
    assert not set(split["train"]) & set(split["test"])
    assert len(split["train"]) + len(split["test"]) == 765 and abs(len(split["test"]) - 153) <= 3
    by_id = {p.id: p for p in pairs}
    seen = {s for i in split["train"] for s in (by_id[i].neg_content.strip(), by_id[i].pos_content.strip())}
    assert not any(by_id[i].neg_content.strip() in seen or by_id[i].pos_content.strip() in seen for i in split["test"])
    committed = json.loads(sentiment_data.SPLIT.read_text())
    assert committed["train"] == split["train"] and committed["test"] == split["test"]
    with pytest.raises(DiceError, match="test_fraction"):
        sentiment_data.make_split(pairs, 1.5, seed=0)
    with pytest.raises(DiceError, match="split"):
        sentiment_data.load_pairs("validation")


def test_tokenizer_trained_here_round_trips_text():
    vocab, merges = text_model.train_tokenizer([p.neg_content for p in PAIRS], 300)
    assert text_model.train_tokenizer([p.neg_content for p in PAIRS], 300) == (vocab, merges)  # deterministic
    tok = text_model.build_tokenizer(vocab, merges)
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == text_model.SPECIAL_TOKENS
    unseen = " Zebras queue politely, don’t they?"  # byte-level: any text encodes and decodes exactly
    assert tok.decode(tok(unseen, add_special_tokens=False)["input_ids"]) == unseen


def test_checkpoint_round_trip_with_weights_only(tiny_lm, tmp_path):
    path = text_model.save_checkpoint(tmp_path / "m.pt", tiny_lm.model, tiny_lm.vocab, tiny_lm.merges, {"seed": 0})
    blob = torch.load(path, weights_only=True)  # plain tensors, strings and numbers only
    assert blob["format"] == text_model.FORMAT and blob["meta"] == {"seed": 0}
    assert "lm_head.decoder.weight" in blob["tied"]  # the tied word embedding is stored once
    lm = text_model.load_text_model(path)
    assert lm.model.lm_head.decoder.weight.data_ptr() == lm.model.roberta.embeddings.word_embeddings.weight.data_ptr()
    x0, cond = lm.encode_pair(PAIRS[0].neg_context, PAIRS[0].neg_content)
    ref = tiny_lm.logits(x0, torch.zeros(1), cond)
    torch.testing.assert_close(lm.logits(x0, torch.zeros(1), cond), ref, atol=0.05, rtol=0.01)  # float16 storage
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        text_model.load_text_model(tmp_path / "bad.pt")
    with pytest.raises(DiceError, match="train-text"):
        text_model.load_text_model(tmp_path / "missing.pt")


def test_training_corruptions_and_a_few_steps(tiny_lm):
    from dicelib.text import train as train_text

    differs, swap = train_text.differing([1, 2, 3, 4], [1, 9, 3, 4])
    assert differs == [False, True, False, False] and swap == [-1, 9, -1, -1]
    assert train_text.differing([1, 2, 3], [1, 7, 8, 3])[1] == [-1, -1, -1]  # unequal spans are not swapped
    rows = [(p.neg_context, p.neg_content, p.pos_content) for p in PAIRS]
    data = train_text.encode_rows(tiny_lm, rows)
    batch = {k: data[k] for k in ("ids", "content", "sentiment", "swap")}
    gen = torch.Generator().manual_seed(0)
    inputs, corrupted = train_text.corrupt(batch, 0.0, 1.0, tiny_lm.tokenizer.mask_token_id, gen)
    swapped = batch["swap"] >= 0
    assert torch.equal(inputs[swapped], batch["swap"][swapped]) and corrupted[swapped].all()
    assert corrupted.any(dim=1).all() and not (corrupted & ~batch["content"]).any()
    cfg = {"vocab_size": 300, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32,
           "max_positions": 128, "dropout": 0.0, "steps": 3, "batch_size": 8, "lr": 1e-3, "warmup": 1,
           "weight_decay": 0.0, "visible_weight": 0.3, "span_share": 0.3, "swap_share": 0.4,
           "context_dropout": 0.1, "eval_every": 2}
    out = train_text.train(cfg, seed=0, progress=False)
    assert out["metrics"]["steps"] == 3 and out["metrics"]["train_rows"] == 2 * len(sentiment_data.load_pairs("train"))
    assert [c["step"] for c in out["curve"]] == [2, 3]
    assert all(0.0 <= out["metrics"]["test"][k] <= 1.0 for k in ("masked_accuracy", "sentiment_accuracy", "swap_accuracy"))


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
    with pytest.raises(DiceError, match="runs"):
        text_editing.invert_and_edit(tiny_lm, ["a"], [" b."], ["c"], {}, tau=0.7)


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="run `dvc repro train-text` first")
def test_committed_text_model_reconstructs_test_sentences_exactly():
    lm = text_editing.load_masked_lm("text")
    assert lm.name == "text" and lm.num_classes > 1000
    pairs = sentiment_data.load_pairs("test")[:8]
    out = text_editing.reconstruct_pairs(lm, pairs, pseudo_inverses=("onehot",), steps=8, seed=0, progress=False)
    assert out["dice_onehot"] == [p.neg_content.strip() for p in pairs]


def test_edit_settings_are_the_papers_sets_masked_generation_and_the_sweep():
    assert text_editing.edit_settings([0.2, 0.8], [0.25, 0.75], [0.5, 0.9]) == {
        "set1": (0.2, 0.8), "set2": (0.25, 0.75), "masked_generation": (0.0, 1.0),
        "sweep_0.5": (0.5, None), "sweep_0.9": (0.9, None)}
