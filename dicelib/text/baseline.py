"""Return the from-scratch baseline of the `text` model: a small RoBERTa with a BPE vocabulary trained here.

The embedded `text` model used to be this: a 0.9 M-parameter `RobertaForMaskedLM` and a byte-level
BPE tokenizer, both trained on the train split only (stage `train-text-baseline`). It stays as the
baseline row of `reports/metrics/text_model.json`: trained with the same objective and scored on the
same held-out masked-word evaluation as the MiniLM-initialised model, it shows what pretraining
brings. No checkpoint is kept.
"""

from __future__ import annotations

from typing import Any

from ..errors import DiceError

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's order: ids 0..4


def train_tokenizer(texts: list[str], vocab_size: int) -> tuple[dict[str, int], list[list[str]]]:
    """Return (vocab, merges) of a byte-level BPE trained on `texts` (deterministic for fixed input)."""
    import json

    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                            show_progress=False)
    model = json.loads(tok.to_str())["model"]
    merges = [m.split(" ") if isinstance(m, str) else list(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def build_tokenizer(vocab: dict[str, int], merges: list[list[str]]) -> Any:
    """Return a `RobertaTokenizer` over the trained vocabulary (ids 0..4 are RoBERTa's special tokens)."""
    from transformers import RobertaTokenizer

    for i, name in enumerate(SPECIAL_TOKENS):
        if vocab.get(name) != i:
            raise DiceError(f"vocabulary must put {name!r} at id {i} (RoBERTa order), got {vocab.get(name)!r}")
    return RobertaTokenizer(vocab=dict(vocab), merges=[tuple(m) for m in merges])


def build_model(vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                max_positions: int, dropout: float) -> Any:
    """Return a freshly initialised small `RobertaForMaskedLM` (weights drawn from torch's global RNG)."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    config = RobertaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_positions + 2,  # RoBERTa's positions start at pad_token_id + 1
        type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    return RobertaForMaskedLM(config)


def build_lm(texts: list[str], cfg: dict[str, Any], seed: int) -> Any:
    """Return the baseline as a `MaskedLM`: tokenizer trained on `texts`, a fresh RoBERTa of `cfg`'s size."""
    import torch

    from ..adapters.masked_lm import MaskedLM

    vocab, merges = train_tokenizer(texts, int(cfg["vocab_size"]))
    torch.manual_seed(seed)
    model = build_model(len(vocab), int(cfg["hidden_size"]), int(cfg["num_layers"]), int(cfg["num_heads"]),
                        int(cfg["intermediate_size"]), int(cfg["max_positions"]), float(cfg["dropout"]))
    return MaskedLM(model, build_tokenizer(vocab, merges), name="text-baseline")
