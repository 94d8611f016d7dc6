"""dicelib.adapters.MaskedLM on tiny random RoBERTa and BERT masked LMs with in-memory tokenizers (no download)."""

from __future__ import annotations

import copy
import time

import pytest
import torch

import dicelib
from dicelib.adapters import MaskedLM
from dicelib.errors import DiceError, MissingWeightsError
from dicelib.text.baseline import build_tokenizer, train_tokenizer

SENTENCES = [
    "Negative Sentiment: After the test.", " She felt anxious about her answers.",
    "Positive Sentiment: After the test.", " She felt confident about her answers.",
    "Negative Sentiment: Regarding the lecture.", " It was dull and confusing.",
    "Positive Sentiment: Regarding the lecture.", " It was clear and engaging.",
]
CONTEXTS = ["Negative Sentiment: After the test.", "Negative Sentiment: Regarding the lecture."]
CONTENTS = [" She felt anxious about it.", " It was dull and confusing."]


@pytest.fixture(scope="module")
def roberta() -> MaskedLM:
    from transformers import RobertaConfig, RobertaForMaskedLM

    vocab, merges = train_tokenizer(SENTENCES, 400)  # byte-level BPE built here, RoBERTa special-token order
    tok = build_tokenizer(vocab, merges)
    torch.manual_seed(0)
    model = RobertaForMaskedLM(RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=37,
                                             max_position_embeddings=64, type_vocab_size=1))
    return MaskedLM(model, tok)


@pytest.fixture(scope="module")
def bert() -> MaskedLM:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    words = sorted({w for s in SENTENCES + CONTENTS for w in s.lower().replace(".", " . ").replace(":", " : ").split()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = BertTokenizer(vocab=vocab)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=37, max_position_embeddings=64))
    return MaskedLM(model, tok)


def _encode(lm: MaskedLM):
    # BERT's word-level test vocabulary tokenises each of CONTENTS to 6 tokens; RoBERTa's BPE may differ
    return lm.encode_pair(CONTEXTS[:1], CONTENTS[:1])


def test_classes_exclude_special_tokens_and_mask(roberta, bert):
    for lm in (roberta, bert):
        special = set(lm.tokenizer.all_special_ids)
        assert lm.num_classes == len(lm.tokenizer) - len(special)
        assert not special & set(lm.class_to_vocab.tolist())
        assert lm.mask_id == lm.num_classes
        assert lm.null_cond == [""]


@pytest.mark.parametrize("name", ["roberta", "bert"])
def test_shapes_and_decode(name, request):
    lm = request.getfixturevalue(name)
    x0, cond = _encode(lm)
    assert x0.dtype == torch.long and x0.dim() == 2 and x0.shape[0] == 1
    assert cond == CONTEXTS[:1]
    out = lm.logits(x0, torch.zeros(1), cond)
    assert out.shape == (1, x0.shape[1], lm.num_classes)
    assert torch.isfinite(out).all()
    expected = CONTENTS[0].strip() if name == "roberta" else CONTENTS[0].strip().lower()  # BERT here is uncased
    assert lm.decode(x0)[0] == expected


def test_pair_template_and_mask_input(roberta, bert):
    x0, cond = _encode(roberta)
    x = x0.clone()
    x[0, 1] = roberta.mask_id
    inputs, pos = roberta._inputs(roberta._to_vocab(x), cond)
    ids = inputs["input_ids"][0].tolist()
    tok = roberta.tokenizer
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert ids[pos[0, 0] - 2: pos[0, 0]] == [tok.sep_token_id, tok.sep_token_id]  # <s> A </s></s> B </s>
    assert ids[pos[0, 1]] == tok.mask_token_id
    assert roberta.decode(x)[0].count("<mask>") == 1
    bx, bcond = _encode(bert)
    binputs, bpos = bert._inputs(bert._to_vocab(bx), bcond)
    assert binputs["token_type_ids"][0, bpos[0]].eq(1).all()  # BERT: second segment has type 1
    assert binputs["input_ids"][0, bpos[0, 0] - 1] == bert.tokenizer.sep_token_id


@pytest.mark.parametrize("name", ["roberta", "bert"])
@pytest.mark.parametrize("pseudo_inverse", ["onehot", "lai"])
@pytest.mark.parametrize("noise", ["mask", "uniform"])
def test_exact_reconstruction(name, pseudo_inverse, noise, request):
    lm = request.getfixturevalue(name)
    x0, cond = lm.encode_pair(CONTEXTS, [CONTENTS[0], CONTENTS[0]])
    gen = torch.Generator().manual_seed(0)
    inv = dicelib.invert(lm, x0, cond, method="masked", steps=8, tau=1.0, pseudo_inverse=pseudo_inverse,
                         generator=gen, noise=noise)
    rec = dicelib.edit(lm, inv, cond, lambda1=1.0, lambda2=0.0, generator=gen)
    assert torch.equal(rec, x0)
    assert lm.decode(rec) == lm.decode(x0)


@pytest.mark.parametrize("name", ["roberta", "bert"])
@pytest.mark.parametrize("pseudo_inverse", ["onehot", "lai"])
def test_bfloat16_compute_reconstructs_exactly_in_grids(name, pseudo_inverse, request):
    """compute_dtype="bfloat16" moves the logits (a bfloat16 copy) but inversion and editing share them: store="none"
    recomputes the inversion's rows beside edit rows in one batch and still reconstructs token for token."""
    lm = copy.copy(request.getfixturevalue(name))
    one, context = _encode(lm)
    full = lm.logits(one, torch.zeros(1), context)
    lm.compute_dtype = "bfloat16"
    half = lm.logits(one, torch.zeros(1), context)
    assert half.dtype == torch.float32 and not torch.equal(half, full)
    torch.testing.assert_close(half, full, atol=0.1, rtol=0.05)
    x0, cond = lm.encode_pair(CONTEXTS, [CONTENTS[0], CONTENTS[0]])
    inv = dicelib.invert(lm, x0, cond, steps=8, tau=0.9, pseudo_inverse=pseudo_inverse, store="none",
                         generator=torch.Generator().manual_seed(3), noise="mask")
    settings = [dict(lambda1=1.0, lambda2=0.0), dict(lambda1=0.0, lambda2=1.0)]  # a sampled row in the same calls
    rec, sampled = dicelib.edit_grid(lm, inv, settings, conds=[cond, cond],
                                     generators=[torch.Generator().manual_seed(i) for i in range(2)])
    assert torch.equal(rec, x0) and not torch.equal(sampled, x0)
    assert all(p.dtype == torch.float32 for p in lm.model.parameters()), "the float32 model is left as it is"


def test_compute_dtype_is_checked(roberta):
    with pytest.raises(DiceError, match="compute_dtype 'float16'.*'float32', 'bfloat16'"):
        MaskedLM(roberta.model, roberta.tokenizer, compute_dtype="float16")


def test_reconstruction_with_guidance_uses_null_context(roberta):
    x0, cond = _encode(roberta)
    gen = torch.Generator().manual_seed(1)
    inv = dicelib.invert(roberta, x0, cond, steps=6, tau=0.7, cfg_scale=2.0, generator=gen, noise="mask")
    assert torch.equal(dicelib.reconstruct(roberta, inv), x0)


def test_context_conditions_the_logits(roberta):
    x0, _ = _encode(roberta)
    a = roberta.logits(x0, torch.zeros(1), ["Negative Sentiment: After the test."])
    b = roberta.logits(x0, torch.zeros(1), ["Positive Sentiment: Regarding the lecture."])
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", ["roberta", "bert"])
def test_padding_chunking_and_head_split_do_not_change_logits(name, request):
    lm = request.getfixturevalue(name)
    x0, _ = lm.encode_pair(CONTEXTS, [CONTENTS[0], CONTENTS[0]])
    cond = ["Negative Sentiment: After the test.", "Positive Sentiment: Regarding the lecture, after the test."]
    full = lm.logits(x0, torch.zeros(2), cond)  # contexts of different lengths: padded in one batch
    rows = torch.cat([lm.logits(x0[i: i + 1], torch.zeros(1), cond[i: i + 1]) for i in range(2)])
    torch.testing.assert_close(full, rows, atol=1e-5, rtol=1e-5)
    assert lm._head is not None  # RoBERTa and BERT split into encoder + head
    head, lm._head = lm._head, None
    try:
        torch.testing.assert_close(lm.logits(x0, torch.zeros(2), cond), full, atol=1e-5, rtol=1e-5)
    finally:
        lm._head = head


def test_bad_inputs_raise_dice_errors(roberta):
    with pytest.raises(DiceError, match="lengths"):
        roberta.encode_pair(CONTEXTS, [" Short.", " A much longer sentence than the first one."])
    with pytest.raises(DiceError, match="contexts"):
        roberta.encode_pair(CONTEXTS, CONTENTS[:1])
    with pytest.raises(DiceError, match="special tokens"):
        roberta.encode_pair(CONTEXTS[:1], [" It was <mask>."])
    x0, cond = _encode(roberta)
    with pytest.raises(DiceError, match="0.."):
        roberta.logits(x0 + roberta.num_classes + 1, torch.zeros(1), cond)
    with pytest.raises(DiceError, match="context strings"):
        roberta.logits(x0, torch.zeros(1), torch.zeros(1, 3))


@pytest.mark.parametrize("model_id", ["dicelib-tests/no-such-masked-lm", "roberta-base"])
def test_missing_weights_error_is_immediate_and_names_the_model(model_id):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        pytest.skip(f"{model_id} is in the local cache")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as err:
        MaskedLM.from_pretrained(model_id)
    assert time.perf_counter() - start < 10  # local_files_only: no network wait
    assert f"huggingface-cli download {model_id}" in str(err.value) and "HF_HUB_OFFLINE=1" in str(err.value)


def test_from_pretrained_loads_a_local_folder(roberta, tmp_path):
    roberta.model.save_pretrained(tmp_path)
    roberta.tokenizer.save_pretrained(tmp_path)
    lm = MaskedLM.from_pretrained(tmp_path)
    x0, cond = _encode(lm)
    assert lm.num_classes == roberta.num_classes
    torch.testing.assert_close(lm.logits(x0, torch.zeros(1), cond), roberta.logits(x0, torch.zeros(1), cond))
