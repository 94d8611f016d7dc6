"""Return the pipeline's own `text` model: a small RoBERTa masked LM with a BPE vocabulary trained here.

SPEC §4: a small masked language model over the Sentiment Editing sentences (train split only),
conditioned by the first sentence. It is a genuine `transformers.RobertaForMaskedLM` with a
byte-level BPE tokenizer trained on the train split, so `dicelib.adapters.MaskedLM` serves it
exactly as it serves `roberta-base`: input `<s> context </s></s> content </s>`, logits at the
content positions. Byte-level BPE decodes losslessly, so "identical sentence" is well defined.

The checkpoint (`models/text_mlm.pt`) is a plain dict of tensors, strings and numbers (no pickled
classes), loaded with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import MODELS
from ..errors import DiceError

CHECKPOINT = MODELS / "text_mlm.pt"
FORMAT = "dicelib-text-mlm"
VERSION = 1
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


def architecture(model: Any) -> dict[str, Any]:
    """Return the hyperparameters `build_model` needs to rebuild `model`."""
    c = model.config
    return {
        "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "num_layers": c.num_hidden_layers,
        "num_heads": c.num_attention_heads, "intermediate_size": c.intermediate_size,
        "max_positions": c.max_position_embeddings - 2, "dropout": c.hidden_dropout_prob,
    }


def save_checkpoint(path: Path, model: Any, vocab: dict[str, int], merges: list[list[str]],
                    meta: dict[str, Any]) -> Path:
    """Return `path` after saving weights (float16), vocabulary and metadata atomically."""
    state, tied, owner = {}, {}, {}
    for k, v in model.state_dict().items():
        if v.data_ptr() in owner:  # tied weights (the LM head's decoder is the word embedding): store once
            tied[k] = owner[v.data_ptr()]
            continue
        owner[v.data_ptr()] = k
        state[k] = v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()
    blob = {"format": FORMAT, "version": VERSION, "architecture": architecture(model), "state_dict": state, "tied": tied,
            "vocab": dict(vocab), "merges": [list(m) for m in merges], "meta": dict(meta)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path = CHECKPOINT) -> dict[str, Any]:
    """Return the checkpoint dict, read with weights_only=True (no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise DiceError(f"no text model at {path}; train it with `dvc repro train-text` (python -m dicelib.train_text)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("version") != VERSION:
        raise DiceError(f"{path} is not a dicelib text model checkpoint (format {FORMAT!r} version {VERSION})")
    return blob


def load_text_model(path: Path = CHECKPOINT, device: str | torch.device = "cpu") -> Any:
    """Return the trained `text` model wrapped as a `dicelib.adapters.MaskedLM` (eval mode, float32)."""
    from ..adapters.masked_lm import MaskedLM

    blob = load_checkpoint(path)
    model = build_model(**blob["architecture"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    state.update({k: state[src] for k, src in blob.get("tied", {}).items()})  # tied weights were stored once
    model.load_state_dict(state)
    model.to(device).eval()
    return MaskedLM(model, build_tokenizer(blob["vocab"], blob["merges"]), name="text")
