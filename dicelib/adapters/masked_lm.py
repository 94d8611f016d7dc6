"""Return a DiscreteDenoiser view of any Hugging Face masked LM (RoBERTa, BERT, DistilBERT, ...).

Paper setup (DICE §4.2): the condition is the context sentence, the inverted positions are the
content sentence's tokens. The model reads the tokenizer's pair template, e.g. RoBERTa's
`<s> context </s></s> content </s>` (BERT: `[CLS] context [SEP] content [SEP]`), with the content
tokens taken from x, and its logits at the content positions are returned.

Classes. K = the tokenizer's vocabulary minus its special tokens (`<s>`, `<pad>`, `<unk>`,
`<mask>`, ...), so special tokens and `<mask>` are never produced. Class k <-> vocab id
`class_to_vocab[k]`. `mask_id = K` is an input-only class that becomes the tokenizer's mask token
(the masked method with noise="mask"; uniform noise stays inside 0..K-1).

Lengths. dicelib inverts a [B, D] batch, so one call holds contents of one token length D: no
padding class, no padded position is ever inverted or edited ("invert only real tokens per
row"). `dicelib.text_editing` groups rows of a dataset by length and runs one batch per length.
Contexts of different lengths are padded inside `logits` (attention mask 0), invisibly.

Condition: a list of context strings, one per row; `null_cond = [""]` (an empty first sentence)
for classifier-free guidance. `t` is ignored: masked LMs have no timestep input.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ..errors import DiceError, MissingWeightsError, check_choice
from .hub import missing_weights_message

COMPUTE_DTYPES = ("float32", "bfloat16")


class MaskedLM:
    """A masked LM and its tokenizer as a DiscreteDenoiser over the content tokens of a sentence pair."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str | None = None, batch_size: int = 64,
                 compute_dtype: str = "float32"):
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise DiceError(f"tokenizer {type(tokenizer).__name__} has no mask token; a masked LM tokenizer is needed")
        check_choice("compute_dtype", compute_dtype, COMPUTE_DTYPES)
        # bfloat16: the forward pass runs on a bfloat16 copy of the model, made on first use (the float32 model
        # is left as it is; logits come back float32). Inversion and editing call the same copy, so
        # reconstruction stays exact; only the predictions move (about 0.1 logit).
        self.compute_dtype = compute_dtype
        self._half: tuple[Any, Any, Any] | None = None
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.batch_size = int(batch_size)  # rows per forward pass (bounds activations and [rows, D, vocab] logits)
        out_size = model.get_output_embeddings().weight.shape[0]  # logits width may differ from len(tokenizer)
        special = set(tokenizer.all_special_ids) | {tokenizer.mask_token_id}
        allowed = [i for i in range(min(out_size, len(tokenizer))) if i not in special]
        self.class_to_vocab = torch.tensor(allowed, dtype=torch.long)  # [K]
        self.vocab_to_class = torch.full((len(tokenizer),), -1, dtype=torch.long)  # [V], -1 = not producible
        self.vocab_to_class[self.class_to_vocab] = torch.arange(len(allowed))
        # special tokens usually sit at the ends of the vocabulary: then the classes are one slice
        lo = allowed[0] if allowed else 0
        self._slice = slice(lo, lo + len(allowed)) if allowed == list(range(lo, lo + len(allowed))) else None
        self.num_classes = len(allowed)
        self.mask_id = self.num_classes  # input-only: becomes tokenizer.mask_token_id
        self.null_cond = [""]
        self._body, self._head = _split_head(model)
        self._templates: dict[str, tuple[list[int], list[int], list[int], list[int], int]] = {}

    @classmethod
    def from_pretrained(cls, model_id: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, compute_dtype: str = "float32", **kwargs: Any) -> MaskedLM:
        """Return the adapter for a local folder or a cached Hub id, offline; absent -> MissingWeightsError.
        dtype: the weights' (transformers); compute_dtype: "bfloat16" runs the forward pass on a bfloat16 copy."""
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_id), local_files_only=True)
            model = AutoModelForMaskedLM.from_pretrained(str(model_id), local_files_only=True, dtype=dtype, **kwargs)
        except (OSError, ValueError) as err:  # missing cache entries raise OSError subclasses
            detail = str(err).splitlines()[0] if isinstance(err, ValueError) and str(err) else ""
            raise MissingWeightsError(missing_weights_message(str(model_id), detail)) from err
        return cls(model.to(device), tokenizer, name=str(model_id), compute_dtype=compute_dtype)

    @property
    def device(self) -> torch.device:
        """Return the device of the wrapped model's parameters."""
        return next(self.model.parameters()).device

    def _template(self, context: str) -> tuple[list[int], list[int], list[int], list[int], int]:
        """Return (prefix ids, suffix ids, prefix types, suffix types, content type) of the pair template."""
        if context not in self._templates:
            tok = self.tokenizer
            enc = tok(context, tok.mask_token)  # the probe marks where the content goes
            ids = list(enc["input_ids"])
            where = [i for i, v in enumerate(ids) if v == tok.mask_token_id]
            if not where:
                raise DiceError(f"tokenizer {type(tok).__name__} dropped the content slot for context {context!r}")
            j = where[-1]
            types = list(enc.get("token_type_ids") or [0] * len(ids))
            self._templates[context] = (ids[:j], ids[j + 1:], types[:j], types[j + 1:], types[j])
        return self._templates[context]

    def _contexts(self, cond: Any, rows: int) -> list[str]:
        """Return `cond` as `rows` context strings (a single row is repeated)."""
        if isinstance(cond, str):
            cond = [cond]
        if not isinstance(cond, (list, tuple)) or not all(isinstance(c, str) for c in cond):
            raise DiceError(f"MaskedLM condition must be a list of context strings, got {type(cond).__name__}")
        if len(cond) == 1 and rows != 1:
            return list(cond) * rows
        if len(cond) != rows:
            raise DiceError(f"condition has {len(cond)} contexts but x has {rows} rows")
        return list(cond)

    def encode_pair(self, contexts: list[str] | str, contents: list[str] | str) -> tuple[torch.Tensor, list[str]]:
        """Return (x0 [B, D] class ids of the contents, cond = the contexts); all contents must share length D."""
        contexts = [contexts] if isinstance(contexts, str) else list(contexts)
        contents = [contents] if isinstance(contents, str) else list(contents)
        if len(contexts) != len(contents):
            raise DiceError(f"got {len(contexts)} contexts but {len(contents)} contents; give one context per content")
        ids = [list(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in contents]
        lengths = sorted({len(r) for r in ids})
        if len(lengths) != 1 or lengths[0] == 0:
            raise DiceError(
                f"contents tokenize to lengths {lengths}; a [B, D] batch needs one nonzero length D. Encode rows of "
                "equal length together (dicelib.text_editing.group_by_length does this)"
            )
        vocab = torch.tensor(ids, dtype=torch.long)  # [B, D]
        x0 = self.vocab_to_class[vocab]
        if (x0 < 0).any():
            bad = sorted({self.tokenizer.convert_ids_to_tokens(int(v)) for v in vocab[x0 < 0]})
            raise DiceError(f"contents contain special tokens {bad}, which the adapter never produces; remove them")
        self._contexts(contexts, len(contents))
        self._check_length(contexts, x0.shape[1])
        return x0, contexts

    def _check_length(self, contexts: list[str], content_len: int) -> None:
        """Raise a DiceError when a context with `content_len` content tokens exceeds the model's positions."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if getattr(self.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") and limit:
            limit -= 2  # RoBERTa's positions start after the padding id
        if not limit:
            return
        for context in dict.fromkeys(contexts):
            prefix, suffix = self._template(context)[:2]
            total = len(prefix) + content_len + len(suffix)
            if total > limit:
                raise DiceError(f"context and text take {total} tokens ({content_len} of them the text); the model "
                                f"{self.name!r} reads at most {limit} positions: shorten the text or the context")

    def decode(self, x: torch.Tensor) -> list[str]:
        """Return the text of each row of class ids x [B, D] (mask_id shows as the mask token)."""
        x = torch.as_tensor(x).long().cpu()
        if x.dim() == 1:
            x = x[None]
        vocab = self._to_vocab(x)
        return [self.tokenizer.decode(row.tolist()).strip() for row in vocab]

    def _to_vocab(self, x: torch.Tensor) -> torch.Tensor:
        """Return vocab ids [B, D] for class ids x [B, D] (mask_id -> the tokenizer's mask token)."""
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > self.mask_id):
            raise DiceError(f"token ids must lie in 0..{self.mask_id} (K classes and mask_id={self.mask_id}), "
                            f"got range {int(x.min())}..{int(x.max())}")
        table = torch.cat([self.class_to_vocab, torch.tensor([self.tokenizer.mask_token_id])])
        return table.to(x.device)[x]

    def _inputs(self, vocab: torch.Tensor, contexts: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Return (model inputs [B, L], content positions [B, D]) with content `vocab` [B, D] in the template."""
        b, d = vocab.shape
        rows, types, starts = [], [], []
        for i, ctx in enumerate(contexts):
            pre, suf, tpre, tsuf, tcontent = self._template(ctx)
            rows.append(pre + vocab[i].tolist() + suf)
            types.append(tpre + [tcontent] * d + tsuf)
            starts.append(len(pre))
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((b, length), pad, dtype=torch.long)
        attention = torch.zeros((b, length), dtype=torch.long)
        token_types = torch.zeros((b, length), dtype=torch.long)
        for i, (r, t) in enumerate(zip(rows, types)):
            ids[i, : len(r)] = torch.tensor(r)
            attention[i, : len(r)] = 1
            token_types[i, : len(t)] = torch.tensor(t)
        inputs = {"input_ids": ids, "attention_mask": attention}
        if "token_type_ids" in getattr(self.tokenizer, "model_input_names", []):
            inputs["token_type_ids"] = token_types
        positions = torch.tensor(starts)[:, None] + torch.arange(d)[None, :]  # [B, D]
        return inputs, positions

    @torch.no_grad()
    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Return logits [B, D, K] of the content tokens given x [B, D] (t is ignored: no timestep input)."""
        b, d = x.shape
        contexts = self._contexts(cond, b)
        vocab = self._to_vocab(x.long().cpu())
        device = self.device
        allowed = self.class_to_vocab.to(device)
        out = []
        body, head, model = self._forward_modules()
        for lo in range(0, b, self.batch_size):
            inputs, positions = self._inputs(vocab[lo: lo + self.batch_size], contexts[lo: lo + self.batch_size])
            inputs = {k: v.to(device) for k, v in inputs.items()}
            positions = positions.to(device)[..., None]  # [b', D, 1]
            if head is not None:  # the vocabulary projection runs on the D content positions only
                hidden = body(**inputs).last_hidden_state  # [b', L, H]
                at = head(hidden.gather(1, positions.expand(-1, -1, hidden.shape[-1])))  # [b', D, V]
            else:
                full = model(**inputs).logits  # [b', L, V]
                at = full.gather(1, positions.expand(-1, -1, full.shape[-1]))  # [b', D, V]
            at = at[..., self._slice] if self._slice is not None else at.index_select(-1, allowed)
            out.append(at.float())  # [b', D, K]
        return torch.cat(out, dim=0).to(x.device)

    def _forward_modules(self) -> tuple[Any, Any, Any]:
        """Return (encoder, head or None, whole model) of the compute dtype: the model itself, or its bfloat16 copy."""
        if self.compute_dtype == "float32":
            return self._body, self._head, self.model
        if self._half is None or next(self._half[2].parameters()).device != self.device:
            half = copy.deepcopy(self.model).to(torch.bfloat16).eval()
            self._half = (*_split_head(half), half)
        return self._half


def _split_head(model: Any) -> tuple[Any, Any]:
    """Return (encoder, LM head) when the model is exactly `base_model` + one head module, else (model, None).

    RoBERTa (`roberta` + `lm_head`) and BERT (`bert` + `cls`) split this way; the head acts per
    token, so applying it to the content positions only gives the same logits for a fraction of the
    cost (the context positions' vocabulary logits are never needed).
    """
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return model, None
    heads = [m for m in model.children() if m is not base and any(True for _ in m.parameters())]
    return (base, heads[0]) if len(heads) == 1 else (model, None)
