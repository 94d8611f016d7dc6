"""Return the trained `text` model (DVC stage `train-text`: python -m dicelib.train_text).

Trains the small RoBERTa of `dicelib.text_model` on the Sentiment Editing train split: each
pair gives two rows, (negative context, negative content) and (positive context, positive
content). Three corruptions, all of the content sentence only:
- a masking level r ~ U(0, 1), as the masked method's schedule does at inference (not BERT's
  fixed 15%), so the model can denoise from any level;
- the sentiment words (the tokens that differ from the pair's other sentence) hidden, so the
  first sentence has to decide them;
- replacement noise: the other sentiment's words put in place (where the two sentences differ by
  spans of equal length), so the model repairs visible words that contradict the context — the
  job BERT's random replacement gives RoBERTa, made informative.
The loss covers corrupted tokens and, down-weighted, the visible ones: DICE re-predicts every
position at every step, so visible tokens must come back as themselves. Context dropout trains
the empty context used for classifier-free guidance. Held-out metrics are for reporting only.
"""

from __future__ import annotations

import difflib
import math
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import ROOT
from .sentiment_data import load_pairs
from .model import CHECKPOINT, SPECIAL_TOKENS, build_model, build_tokenizer, save_checkpoint, train_tokenizer
from ..io import save_metrics, save_plot_data

PAD = SPECIAL_TOKENS.index("<pad>")  # id 1, RoBERTa order


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


def encode_rows(lm: Any, rows: list[tuple[str, str, str]]) -> dict[str, torch.Tensor]:
    """Return padded inputs [N, L] of (context, content, partner) rows: ids, content and sentiment masks.

    `sentiment` marks the content tokens that differ from the partner sentence (the other sentiment
    of the pair): the words an edit has to change. `null_*` are the same rows with empty contexts.
    """
    out = {}
    for key, ctx_of in (("", lambda c: c), ("null_", lambda c: "")):
        ids, content, sentiment, swap = [], [], [], []
        for ctx, sentence, partner in rows:
            pre, suf, *_ = lm._template(ctx_of(ctx))
            body = list(lm.tokenizer(sentence, add_special_tokens=False)["input_ids"])
            differs, swapped = differing(body, list(lm.tokenizer(partner, add_special_tokens=False)["input_ids"]))
            ids.append(pre + body + suf)
            content.append([0] * len(pre) + [1] * len(body) + [0] * len(suf))
            sentiment.append([0] * len(pre) + differs + [0] * len(suf))
            swap.append([-1] * len(pre) + swapped + [-1] * len(suf))
        width = max(len(r) for r in ids)
        out[key + "ids"] = torch.tensor([r + [PAD] * (width - len(r)) for r in ids])
        out[key + "content"] = torch.tensor([c + [0] * (width - len(c)) for c in content], dtype=torch.bool)
        out[key + "sentiment"] = torch.tensor([c + [0] * (width - len(c)) for c in sentiment], dtype=torch.bool)
        out[key + "swap"] = torch.tensor([c + [-1] * (width - len(c)) for c in swap])
    width = max(out["ids"].shape[1], out["null_ids"].shape[1])
    fills = {"ids": PAD, "content": 0, "sentiment": 0, "swap": -1}
    for key, value in out.items():
        out[key] = torch.nn.functional.pad(value, (0, width - value.shape[1]), value=fills[key.removeprefix("null_")])
    return out


def corrupt(batch: dict[str, torch.Tensor], span_share: float, swap_share: float, mask_token: int,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (corrupted inputs [N, L], bool [N, L] of the corrupted tokens), at least one per row.

    Three kinds of rows: `swap_share` of them carry the other sentiment's words in place (where the
    pair differs by spans of equal length) and a few masks, so the model learns to repair words
    that contradict the context, as BERT-style replacement noise does; `span_share` hide their
    sentiment words plus a few others (what an edit regenerates); the rest hide a level
    r ~ U(0, 1) of their tokens (what the masked sampler sees).
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
    masked = torch.where(span_rows, (batch["sentiment"] | extra) & content, torch.where(swap_rows, extra, uniform))
    masked &= ~swapped
    # rows left with nothing corrupted get one random content token masked
    empty = ~(masked | swapped).any(dim=1)
    score = torch.rand(content.shape, generator=gen).masked_fill(~content, -1.0)
    masked[empty, score[empty].argmax(dim=1)] = True
    inputs = torch.where(swapped, batch["swap"], ids).masked_fill(masked, mask_token)
    return inputs, masked | swapped


def batch_loss(model: Any, batch: dict[str, torch.Tensor], inputs: torch.Tensor, corrupted: torch.Tensor,
               visible_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weighted loss, accuracy on corrupted tokens) of one batch: targets are the clean ids."""
    keep = batch["ids"].ne(PAD).any(dim=0)  # drop columns that are padding in every row
    ids, content, inputs, corrupted = batch["ids"][:, keep], batch["content"][:, keep], inputs[:, keep], corrupted[:, keep]
    hidden = model.roberta(input_ids=inputs, attention_mask=ids.ne(PAD).long()).last_hidden_state  # [N, L, H]
    # the LM head (the widest matmul) runs only where the loss looks: content tokens
    weight = corrupted.float() + visible_weight * (content & ~corrupted).float()  # [N, L]
    where = weight > 0
    logits = model.lm_head(hidden[where])  # [M, V]
    nll = torch.nn.functional.cross_entropy(logits, ids[where], reduction="none")  # [M]
    loss = (nll * weight[where]).sum() / weight[where].sum()
    acc = (logits.argmax(-1) == ids[where])[corrupted[where]].float().mean()
    return loss, acc


def pick(data: dict[str, torch.Tensor], idx: torch.Tensor, drop: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the rows `idx`, with the empty-context variant where `drop` [n] is True."""
    d = drop[:, None]
    return {k: torch.where(d, data[f"null_{k}"][idx], data[k][idx]) for k in ("ids", "content", "sentiment", "swap")}


@torch.no_grad()
def evaluate(model: Any, data: dict[str, torch.Tensor], mask_token: int, seed: int) -> dict[str, float]:
    """Return loss and accuracy on tokens hidden at random levels, on hidden sentiment words, on swapped words."""
    model.eval()
    batch = {k: data[k] for k in ("ids", "content", "sentiment", "swap")}
    ids, sentiment, swapped = batch["ids"], batch["sentiment"] & batch["content"], batch["swap"] >= 0
    cases = {
        "masked": corrupt(batch, 0.0, 0.0, mask_token, torch.Generator().manual_seed(seed)),
        "sentiment": (ids.masked_fill(sentiment, mask_token), sentiment),
        "swap": (torch.where(swapped, batch["swap"], ids), swapped),
    }
    out = {}
    for name, (inputs, corrupted) in cases.items():
        loss, acc = batch_loss(model, batch, inputs, corrupted, visible_weight=0.0)
        out.update({f"{name}_loss": float(loss), f"{name}_accuracy": float(acc)})
    return out


def train(cfg: dict[str, Any], seed: int, progress: bool = True) -> dict[str, Any]:
    """Return {"model", "vocab", "merges", "metrics"} after training on the train split."""
    from ..adapters.masked_lm import MaskedLM

    torch.manual_seed(seed)  # weight init and dropout use the global RNG
    torch.set_num_threads(int(cfg.get("threads", 1)))  # >1 thread collapses under CPU contention
    train_pairs, test_pairs = load_pairs("train"), load_pairs("test")
    rows = [(p.neg_context, p.neg_content, p.pos_content) for p in train_pairs] + \
        [(p.pos_context, p.pos_content, p.neg_content) for p in train_pairs]
    vocab, merges = train_tokenizer([t for r in rows for t in r[:2]], int(cfg["vocab_size"]))
    tokenizer = build_tokenizer(vocab, merges)
    model = build_model(len(vocab), int(cfg["hidden_size"]), int(cfg["num_layers"]), int(cfg["num_heads"]),
                        int(cfg["intermediate_size"]), int(cfg["max_positions"]), float(cfg["dropout"]))
    lm = MaskedLM(model, tokenizer)
    data = encode_rows(lm, rows)
    test = encode_rows(lm, [(p.neg_context, p.neg_content, p.pos_content) for p in test_pairs]
                       + [(p.pos_context, p.pos_content, p.neg_content) for p in test_pairs])
    mask_token = tokenizer.mask_token_id
    steps, bs = int(cfg["steps"]), int(cfg["batch_size"])
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    warmup = int(cfg["warmup"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    start, n, losses, curve = time.perf_counter(), data["ids"].shape[0], [], []
    model.train()
    for step in tqdm(range(steps), desc="train-text", disable=not progress):
        idx = torch.randint(n, (bs,), generator=gen)
        batch = pick(data, idx, torch.rand(bs, generator=gen) < float(cfg["context_dropout"]))
        inputs, corrupted = corrupt(batch, float(cfg["span_share"]), float(cfg["swap_share"]), mask_token, gen)
        loss, _ = batch_loss(model, batch, inputs, corrupted, float(cfg["visible_weight"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % int(cfg.get("eval_every", 0) or steps + 1) == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "train_loss": sum(losses[-50:]) / len(losses[-50:]),
                          **{f"test_{k}": v for k, v in evaluate(model, test, mask_token, seed).items()}})
            model.train()
    seconds = time.perf_counter() - start
    metrics = {
        "train_loss": sum(losses[-50:]) / len(losses[-50:]),
        "test": evaluate(model, test, mask_token, seed),
        "train": evaluate(model, data, mask_token, seed),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(vocab), "train_rows": n, "steps": steps,
    }
    print(f"trained {steps} steps in {seconds:.1f} s")  # printed, not recorded: reruns leave the outputs byte-identical
    model.eval()
    return {"model": model, "vocab": vocab, "merges": merges, "metrics": metrics, "curve": curve}


def main() -> None:
    """Train from params.yaml (base.seed, text_model) and write the checkpoint and its metrics."""
    import pandas as pd
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    seed, cfg = int(params["base"]["seed"]), params["text_model"]
    out = train(cfg, seed)
    save_checkpoint(CHECKPOINT, out["model"], out["vocab"], out["merges"], {"seed": seed, **out["metrics"]})
    save_metrics(out["metrics"], "text_model")
    save_plot_data(pd.DataFrame(out["curve"]), "text_model_training")
    print(f"wrote {CHECKPOINT.relative_to(ROOT)}: {out['metrics']}")


if __name__ == "__main__":
    main()
