"""Return the trained `text` model (stage `train-text`) and the from-scratch baseline's scores (`train-text-baseline`).

    python -m dicelib.text.train             # the MiniLM-initialised BertForMaskedLM -> models/text_mlm/
    python -m dicelib.text.train --baseline  # the 0.9 M-parameter RoBERTa trained from scratch (scores only)

Both train the same way on the train split (val and test held out): each pair gives two rows,
(negative context, negative content) and (positive context, positive content), and every step
corrupts content tokens only, in three kinds of rows:
- a masking level r ~ U(0, 1), as the masked method's schedule does at inference, so the model
  can denoise from any level;
- exactly the words that differ from the pair's other version masked, with the matching context:
  what an edit has to regenerate, decided by the first sentence;
- replacement noise: the other sentiment's words put in place (where the two versions differ by
  spans of equal length), so the model repairs visible words that contradict the context.
The loss covers corrupted tokens and, down-weighted, the visible ones (DICE re-predicts every
position at every step). The vocabulary projection (30,522 wide for BERT) runs only on content
positions: hidden states are gathered first. Context dropout trains the empty context used for
classifier-free guidance. Held-out scores (val for the curve, test for the report) never steer
training. Both models go through `adapters.MaskedLM`'s template, so training sees exactly the
inputs inference builds.
"""

from __future__ import annotations

import difflib
import math
import time
from typing import Any

import torch
from tqdm import tqdm

from .. import kernels
from pathlib import Path

from ..config import METRICS, PLOTS, ROOT
from ..errors import DiceError, Relation, boolean, integer, number
from ..io import atomic_write, save_metrics, save_table, stage_params
from .sentiment_data import SentimentPair, load_pairs

EVALS = ("masked", "pair_words", "pair_word_alone", "swap")  # held-out accuracies (see evaluate)


def differing(a: list[int], b: list[int]) -> tuple[list[bool], list[int]]:
    """Return, per token of `a`: does it differ from `b` (difflib alignment), and b's token replacing it or -1.

    The replacement is defined where a span of `a` is replaced by a span of `b` of the same length,
    so the other sentiment's words can be swapped in place.
    """
    differs, swap = [True] * len(a), [-1] * len(a)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            differs[i1:i2] = [False] * (i2 - i1)
        elif tag == "replace" and i2 - i1 == j2 - j1:
            swap[i1:i2] = b[j1:j2]
    return differs, swap


def pair_rows(pairs: list[SentimentPair]) -> list[tuple[str, str, str]]:
    """Return (context, content, the pair's other content) rows: each pair's negative and positive version."""
    return [(p.neg_context, p.neg_content, p.pos_content) for p in pairs] + \
        [(p.pos_context, p.pos_content, p.neg_content) for p in pairs]


def _pad_id(lm: Any) -> int:
    pad = lm.tokenizer.pad_token_id
    return 0 if pad is None else int(pad)


def encode_rows(lm: Any, rows: list[tuple[str, str, str]]) -> dict[str, torch.Tensor]:
    """Return padded inputs [N, L] of (context, content, partner) rows as `lm`'s template builds them.

    ids, types (token type ids), content (the content positions), sentiment (content tokens that
    differ from the partner: the words an edit has to change), swap (the partner's token in place,
    or -1). `null_*`: the same rows with an empty context (guidance's null condition).
    """
    pad = _pad_id(lm)
    out = {}
    for key, ctx_of in (("", lambda c: c), ("null_", lambda c: "")):
        ids, types, content, sentiment, swap = [], [], [], [], []
        for ctx, sentence, partner in rows:
            pre, suf, tpre, tsuf, tcontent = lm._template(ctx_of(ctx))
            body = list(lm.tokenizer(sentence, add_special_tokens=False)["input_ids"])
            differs, swapped = differing(body, list(lm.tokenizer(partner, add_special_tokens=False)["input_ids"]))
            ids.append(pre + body + suf)
            types.append(tpre + [tcontent] * len(body) + tsuf)
            content.append([0] * len(pre) + [1] * len(body) + [0] * len(suf))
            sentiment.append([0] * len(pre) + differs + [0] * len(suf))
            swap.append([-1] * len(pre) + swapped + [-1] * len(suf))
        width = max(len(r) for r in ids)
        fill = lambda rs, v: [r + [v] * (width - len(r)) for r in rs]  # noqa: E731
        out[key + "ids"] = torch.tensor(fill(ids, pad))
        out[key + "types"] = torch.tensor(fill(types, 0))
        out[key + "content"] = torch.tensor(fill(content, 0), dtype=torch.bool)
        out[key + "sentiment"] = torch.tensor(fill(sentiment, 0), dtype=torch.bool)
        out[key + "swap"] = torch.tensor(fill(swap, -1))
    width = max(out["ids"].shape[1], out["null_ids"].shape[1])
    fills = {"ids": pad, "types": 0, "content": 0, "sentiment": 0, "swap": -1}
    for key, value in out.items():
        out[key] = torch.nn.functional.pad(value, (0, width - value.shape[1]), value=fills[key.removeprefix("null_")])
    out["attention"] = out["ids"].ne(pad).long()  # content and template tokens are never padding
    out["null_attention"] = out["null_ids"].ne(pad).long()
    return out


KEYS = ("ids", "types", "content", "sentiment", "swap", "attention")


def pick(data: dict[str, torch.Tensor], idx: torch.Tensor, drop: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the rows `idx`, with the empty-context variant where `drop` [n] is True."""
    d = drop[:, None]
    return {k: torch.where(d, data[f"null_{k}"][idx], data[k][idx]) for k in KEYS}


def corrupt(batch: dict[str, torch.Tensor], span_share: float, swap_share: float, mask_token: int,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (corrupted inputs [N, L], bool [N, L] of the corrupted tokens), at least one per row.

    `swap_share` of the rows carry the other sentiment's words in place (where the pair differs by
    spans of equal length) and a few masks; `span_share` hide exactly their pair words (the tokens
    that differ from the other version); the rest hide a level r ~ U(0, 1) of their tokens.
    """
    content, ids = batch["content"], batch["ids"]
    n = content.shape[0]
    level = torch.rand(n, 1, generator=gen)
    uniform = (torch.rand(content.shape, generator=gen) < level) & content
    extra = (torch.rand(content.shape, generator=gen) < 0.3 * level) & content
    kind = torch.rand(n, 1, generator=gen)
    can_swap = (batch["swap"] >= 0).any(dim=1, keepdim=True)
    swap_rows = (kind < swap_share) & can_swap
    span_rows = (kind >= swap_share) & (kind < swap_share + span_share)
    swapped = swap_rows & (batch["swap"] >= 0)
    masked = torch.where(span_rows, batch["sentiment"] & content, torch.where(swap_rows, extra, uniform))
    masked &= ~swapped
    # rows left with nothing corrupted get one random content token masked
    empty = ~(masked | swapped).any(dim=1)
    score = torch.rand(content.shape, generator=gen).masked_fill(~content, -1.0)
    masked[empty, score[empty].argmax(dim=1)] = True
    inputs = torch.where(swapped, batch["swap"], ids).masked_fill(masked, mask_token)
    return inputs, masked | swapped


def batch_loss(lm: Any, batch: dict[str, torch.Tensor], inputs: torch.Tensor, corrupted: torch.Tensor,
               visible_weight: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return (weighted loss, number right among corrupted tokens, number corrupted) of one batch.

    Targets are the clean ids; the LM head runs only on the content positions the loss looks at.
    """
    keep = batch["attention"].bool().any(dim=0)  # drop columns that are padding in every row
    cut = {k: v[:, keep] for k, v in batch.items()}
    inputs, corrupted = inputs[:, keep], corrupted[:, keep]
    kwargs = {"input_ids": inputs, "attention_mask": cut["attention"]}
    if "token_type_ids" in getattr(lm.tokenizer, "model_input_names", []):
        kwargs["token_type_ids"] = cut["types"]
    hidden = lm._body(**kwargs).last_hidden_state  # [N, L, H]
    weight = corrupted.float() + visible_weight * (cut["content"] & ~corrupted).float()  # [N, L]
    where = weight > 0
    logits = lm._head(hidden[where])  # [M, V]: only where the loss looks
    target = cut["ids"][where]
    nll = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none")  # [M]
    loss = (nll * weight[where]).sum() / weight[where].sum()
    hit = (logits.argmax(-1) == target)[corrupted[where]]
    return loss, int(hit.sum()), int(hit.numel())


@torch.no_grad()
def evaluate(lm: Any, data: dict[str, torch.Tensor], seed: int, batch_size: int = 128) -> dict[str, float]:
    """Return held-out accuracies on hidden content tokens, per kind of corruption.

    masked: a level r ~ U(0, 1) of each sentence's tokens hidden (fixed seed); pair_words: every
    token that differs from the pair's other version hidden at once; pair_word_alone: each of
    them hidden alone (one row per token); swap: the other version's words put in place.
    """
    lm.model.eval()
    mask_token = lm.tokenizer.mask_token_id
    batch = {k: data[k] for k in KEYS}
    ids, sentiment = batch["ids"], batch["sentiment"] & batch["content"]
    swapped = batch["swap"] >= 0
    rows, cols = sentiment.nonzero(as_tuple=True)
    alone = {k: v[rows] for k, v in batch.items()}
    one = torch.zeros_like(alone["content"])
    one[torch.arange(len(rows)), cols] = True
    cases = {
        "masked": (batch, *corrupt(batch, 0.0, 0.0, mask_token, torch.Generator().manual_seed(seed))),
        "pair_words": (batch, ids.masked_fill(sentiment, mask_token), sentiment),
        "pair_word_alone": (alone, alone["ids"].masked_fill(one, mask_token), one),
        "swap": (batch, torch.where(swapped, batch["swap"], ids), swapped),
    }
    out = {}
    for name, (b, inputs, corrupted) in cases.items():
        right = total = 0
        for lo in range(0, inputs.shape[0], batch_size):
            part = {k: v[lo: lo + batch_size] for k, v in b.items()}
            sel = corrupted[lo: lo + batch_size]
            if sel.any():
                _, r, t = batch_loss(lm, part, inputs[lo: lo + batch_size], sel, 0.0)
                right, total = right + r, total + t
        out[name] = right / total if total else float("nan")
    return out


def train_lm(lm: Any, cfg: dict[str, Any], seed: int, progress: bool = True, desc: str = "train-text") -> dict[str, Any]:
    """Train `lm` (a MaskedLM; trainable parameters as set) in place on the train split; return scores and curve."""
    torch.set_num_threads(int(cfg.get("threads", 1)))  # >1 thread collapses under CPU contention
    data = encode_rows(lm, pair_rows(load_pairs("train")))
    val = encode_rows(lm, pair_rows(load_pairs("val")[: int(cfg.get("eval_pairs", 0)) or None]))
    mask_token = lm.tokenizer.mask_token_id
    model = lm.model
    steps, bs = int(cfg["steps"]), int(cfg["batch_size"])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    warmup = max(1, int(cfg["warmup"]))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    start, n, losses, curve = time.perf_counter(), data["ids"].shape[0], [], []
    every = int(cfg.get("eval_every", 0) or steps + 1)
    autocast = bool(cfg.get("bf16_autocast", False)) and lm.device.type == "cpu"
    model.train()
    for step in tqdm(range(steps), desc=desc, disable=not progress):
        idx = torch.randint(n, (bs,), generator=gen)
        batch = pick(data, idx, torch.rand(bs, generator=gen) < float(cfg["context_dropout"]))
        inputs, corrupted = corrupt(batch, float(cfg["span_share"]), float(cfg["swap_share"]), mask_token, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):  # bf16 matmuls, float32 weights
            loss, _, _ = batch_loss(lm, batch, inputs, corrupted, float(cfg["visible_weight"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "train_loss": sum(losses[-50:]) / len(losses[-50:]),
                          **{f"val_{k}_accuracy": v for k, v in evaluate(lm, val, seed).items()}})
            model.train()
    seconds = time.perf_counter() - start
    model.eval()
    print(f"{desc}: {steps} steps in {seconds:.1f} s ({steps / max(seconds, 1e-9):.2f} steps/s)")  # printed, not recorded
    return {"train_loss": sum(losses[-50:]) / len(losses[-50:]), "curve": curve, "train_rows": n}


def scores(lm: Any, seed: int, eval_pairs: int = 0) -> dict[str, float]:
    """Return the flat accuracies of `lm` on the train, val and test splits (fractions; eval_pairs > 0: that many per split)."""
    out = {}
    for split in ("train", "val", "test"):
        for k, v in evaluate(lm, encode_rows(lm, pair_rows(load_pairs(split)[: eval_pairs or None])), seed).items():
            out[f"{split}_{k}_accuracy"] = round(v, 6)
    return out


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """Return the small metrics file of a text model: `masked_acc`, its held-out (test) masked-word accuracy
    (`dvc metrics show` compares it across runs; every score is in the model's table). No other file has the key."""
    return {"masked_acc": metrics["test_masked_accuracy"]}


def summary_table(metrics: dict[str, Any]) -> "pd.DataFrame":
    """Return every number of a text model's training as rows (metric, value): reports/tables/text_model*.csv."""
    import pandas as pd

    return pd.DataFrame({"metric": list(metrics), "value": [str(v) for v in metrics.values()]})


def train_text_model(cfg: dict[str, Any], seed: int, progress: bool = True) -> dict[str, Any]:
    """Return {"lm", "metrics", "curve"}: the MiniLM-initialised BertForMaskedLM fine-tuned on the train split."""
    from ..adapters.masked_lm import MaskedLM
    from . import model as text_model

    model = text_model.build_model(seed=seed)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = float(cfg["dropout"])
    for m in model.modules():  # the config's dropout is read at construction: set the modules too
        if isinstance(m, torch.nn.Dropout):
            m.p = float(cfg["dropout"])
    text_model.freeze(model)
    lm = MaskedLM(model, text_model.load_tokenizer(), name="text")
    out = train_lm(lm, cfg, seed, progress)
    text_model.round_to_store(model)  # the saved weights are the evaluated ones
    metrics = {"model": "text", "parameters": sum(p.numel() for p in model.parameters()),
               "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "steps": int(cfg["steps"]), "batch_size": int(cfg["batch_size"]), "train_rows": out["train_rows"],
               "train_loss": round(out["train_loss"], 6), **scores(lm, seed, int(cfg.get("eval_pairs", 0)))}
    return {"lm": lm, "metrics": metrics, "curve": out["curve"]}


def train_baseline(cfg: dict[str, Any], seed: int, progress: bool = True) -> dict[str, Any]:
    """Return {"lm", "metrics", "curve"}: the from-scratch RoBERTa (BPE trained on the train split)."""
    from .baseline import build_lm

    texts = [t for r in pair_rows(load_pairs("train")) for t in r[:2]]
    lm = build_lm(texts, cfg, seed)
    out = train_lm(lm, cfg, seed, progress, desc="train-text-baseline")
    metrics = {"model": "from-scratch", "parameters": sum(p.numel() for p in lm.model.parameters()),
               "trained_parameters": sum(p.numel() for p in lm.model.parameters()),
               "steps": int(cfg["steps"]), "batch_size": int(cfg["batch_size"]), "train_rows": out["train_rows"],
               "train_loss": round(out["train_loss"], 6), **scores(lm, seed, int(cfg.get("eval_pairs", 0)))}
    return {"lm": lm, "metrics": metrics, "curve": out["curve"]}


SHARE = number(0, 1)
TRAINING = dict(batch_size=integer(1), lr=number(0, open_lo=True), warmup=integer(0), weight_decay=number(0),
                dropout=number(0, 1, open_hi=True), visible_weight=number(0), span_share=SHARE, swap_share=SHARE,
                context_dropout=SHARE, eval_every=integer(0), eval_pairs=integer(0), threads=integer(1))
PARAMS = {  # the text_model and text_baseline groups of params.yaml, checked before any work
    "text_model": stage_params("text_model", "steps", bf16_autocast=boolean(), **TRAINING),
    "text_baseline": stage_params(
        "text_baseline", "steps",
        Relation(("hidden_size", "num_heads"), "hidden_size divisible by num_heads", lambda h, n: h % n == 0),
        vocab_size=integer(261), hidden_size=integer(1), num_layers=integer(1), num_heads=integer(1),
        intermediate_size=integer(1), max_positions=integer(8), **TRAINING),
}


def main(argv: list[str] | None = None) -> None:
    """Train from params.yaml (base.seed, text_model or text_baseline) and write the model and its scores."""
    import argparse

    import pandas as pd
    import yaml

    from ..config import TABLES
    from ..io import SHARED_RULES, Stage

    parser = argparse.ArgumentParser(prog="python -m dicelib.text.train")
    parser.add_argument("--baseline", action="store_true", help="train the from-scratch baseline (scores only)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"), help="the params file (default: params.yaml)")
    args = parser.parse_args(argv)
    params = yaml.safe_load(Path(args.params).read_text())
    group = "text_baseline" if args.baseline else "text_model"
    seed = params["base"]["seed"]
    if not SHARED_RULES["seed"].accepts(seed):
        raise DiceError(f"base: parameter seed = {seed!r} is not allowed; expected {SHARED_RULES['seed'].allowed}")
    PARAMS[group].check(**params[group])
    table = TABLES / f"{'text_baseline' if args.baseline else 'text_model'}.csv"
    if args.baseline:
        with Stage("train-text-baseline", [table, table.with_suffix(".md"), METRICS / "text_baseline.json"]) as stage:
            out = train_baseline(params["text_baseline"], seed)
            save_table(summary_table(out["metrics"]), "text_baseline", folder=stage.path(table).parent)
            stage.path(table.with_suffix(".md"))
            save_metrics(headline(out["metrics"]), "text_baseline", folder=stage.path(METRICS / "text_baseline.json").parent)
    else:
        from .model import FOLDER, save_text_model

        curve = PLOTS / "text_model_training.csv"
        with Stage("train-text", [FOLDER, table, table.with_suffix(".md"), METRICS / "text_model.json", curve]) as stage:
            out = train_text_model(params["text_model"], seed)
            save_text_model(stage.path(FOLDER), out["lm"].model, out["lm"].tokenizer, {"seed": seed, **out["metrics"]})
            save_table(summary_table(out["metrics"]), "text_model", folder=stage.path(table).parent)
            stage.path(table.with_suffix(".md"))
            save_metrics(headline(out["metrics"]), "text_model", folder=stage.path(METRICS / "text_model.json").parent)
            atomic_write(stage.path(curve), lambda f: pd.DataFrame(out["curve"]).to_csv(f, index=False))
        print(f"wrote {FOLDER.relative_to(ROOT)}")
    print(out["metrics"])


if __name__ == "__main__":
    from ..io import run_stage

    # the thread count only: ATen's AVX2 kernels (kernels.BFLOAT16) made a training step 3x slower on an AVX-512
    # CPU (2.0 s instead of 0.64 s, measured), and this stage's bytes depend on the CPU anyway (docs/reproducibility.md)
    kernels.pin_process({"OMP_NUM_THREADS": kernels.PINNED["OMP_NUM_THREADS"]})
    run_stage(main)
