"""Return the trained `text` model (DVC stage `train-text`: python -m dicelib.train_text).

Trains the small RoBERTa of `dicelib.text_model` on the Sentiment Editing train split: each
pair gives two rows, (negative context, negative content) and (positive context, positive
content). Per row a masking level r ~ U(0, 1) masks that share of the content tokens, as the
masked method's schedule does at inference (not BERT's fixed 15%), so the model can denoise from
any level. The loss covers masked content tokens and, down-weighted, visible ones: DICE
re-predicts every position at every step, so visible tokens must come back as themselves.
Context dropout trains the empty context used for classifier-free guidance.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import ROOT
from .sentiment_data import load_pairs
from .text_model import CHECKPOINT, SPECIAL_TOKENS, build_model, build_tokenizer, save_checkpoint, train_tokenizer
from .reporting import save_metrics

PAD = SPECIAL_TOKENS.index("<pad>")  # id 1, RoBERTa order


def encode_rows(lm: Any, rows: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Return padded pair inputs [N, L]: ids, attention, content mask, and the same rows with empty contexts."""
    out = {}
    for key, ctx_of in (("", lambda c: c), ("null_", lambda c: "")):
        ids, content = [], []
        for ctx, sentence in rows:
            pre, suf, *_ = lm._template(ctx_of(ctx))
            body = list(lm.tokenizer(sentence, add_special_tokens=False)["input_ids"])
            ids.append(pre + body + suf)
            content.append([0] * len(pre) + [1] * len(body) + [0] * len(suf))
        length = max(len(r) for r in ids)
        pad = lm.tokenizer.pad_token_id
        out[key + "ids"] = torch.tensor([r + [pad] * (length - len(r)) for r in ids])
        out[key + "content"] = torch.tensor([c + [0] * (length - len(c)) for c in content], dtype=torch.bool)
    width = max(out["ids"].shape[1], out["null_ids"].shape[1])
    for key in ("ids", "content", "null_ids", "null_content"):
        fill = lm.tokenizer.pad_token_id if key.endswith("ids") else 0
        out[key] = torch.nn.functional.pad(out[key], (0, width - out[key].shape[1]), value=fill)
    return out


def corrupt(ids: torch.Tensor, content: torch.Tensor, mask_token: int, gen: torch.Generator) -> torch.Tensor:
    """Return a bool [N, L] mask: per row a level r ~ U(0,1) of the content tokens, at least one."""
    level = torch.rand(ids.shape[0], 1, generator=gen)
    masked = (torch.rand(ids.shape, generator=gen) < level) & content
    # rows left with nothing masked get one random content token masked
    empty = ~masked.any(dim=1)
    score = torch.rand(ids.shape, generator=gen).masked_fill(~content, -1.0)
    masked[empty, score[empty].argmax(dim=1)] = True
    return masked


def batch_loss(model: Any, batch: dict[str, torch.Tensor], masked: torch.Tensor, mask_token: int,
               visible_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weighted loss, masked-token accuracy) of one batch."""
    keep = batch["ids"].ne(PAD).any(dim=0)  # drop columns that are padding in every row
    ids, content, masked = batch["ids"][:, keep], batch["content"][:, keep], masked[:, keep]
    hidden = model.roberta(input_ids=ids.masked_fill(masked, mask_token),
                           attention_mask=ids.ne(PAD).long()).last_hidden_state  # [N, L, H]
    # the LM head (the widest matmul) runs only where the loss looks: content tokens
    weight = masked.float() + visible_weight * (content & ~masked).float()  # [N, L]
    where = weight > 0
    logits = model.lm_head(hidden[where])  # [M, V]
    nll = torch.nn.functional.cross_entropy(logits, ids[where], reduction="none")  # [M]
    loss = (nll * weight[where]).sum() / weight[where].sum()
    acc = (logits.argmax(-1) == ids[where])[masked[where]].float().mean()
    return loss, acc


def pick(data: dict[str, torch.Tensor], idx: torch.Tensor, drop: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the rows `idx`, with the empty-context variant where `drop` [n] is True."""
    d = drop[:, None]
    return {
        "ids": torch.where(d, data["null_ids"][idx], data["ids"][idx]),
        "content": torch.where(d, data["null_content"][idx], data["content"][idx]),
    }


@torch.no_grad()
def evaluate(model: Any, data: dict[str, torch.Tensor], mask_token: int, seed: int) -> dict[str, float]:
    """Return held-out masked-token loss and accuracy at random levels (fixed generator)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    batch = {"ids": data["ids"], "content": data["content"]}
    masked = corrupt(batch["ids"], batch["content"], mask_token, gen)
    loss, acc = batch_loss(model, batch, masked, mask_token, visible_weight=0.0)
    return {"masked_loss": float(loss), "masked_accuracy": float(acc)}


def train(cfg: dict[str, Any], seed: int, progress: bool = True) -> dict[str, Any]:
    """Return {"model", "vocab", "merges", "metrics"} after training on the train split."""
    from .adapters.masked_lm import MaskedLM

    torch.manual_seed(seed)  # weight init and dropout use the global RNG
    torch.set_num_threads(int(cfg.get("threads", 1)))  # >1 thread collapses under CPU contention
    train_pairs, test_pairs = load_pairs("train"), load_pairs("test")
    rows = [(p.neg_context, p.neg_content) for p in train_pairs] + [(p.pos_context, p.pos_content) for p in train_pairs]
    vocab, merges = train_tokenizer([t for r in rows for t in r], int(cfg["vocab_size"]))
    tokenizer = build_tokenizer(vocab, merges)
    model = build_model(len(vocab), int(cfg["hidden_size"]), int(cfg["num_layers"]), int(cfg["num_heads"]),
                        int(cfg["intermediate_size"]), int(cfg["max_positions"]), float(cfg["dropout"]))
    lm = MaskedLM(model, tokenizer)
    data = encode_rows(lm, rows)
    test = encode_rows(lm, [(p.neg_context, p.neg_content) for p in test_pairs]
                       + [(p.pos_context, p.pos_content) for p in test_pairs])
    mask_token = tokenizer.mask_token_id
    steps, bs = int(cfg["steps"]), int(cfg["batch_size"])
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    warmup = int(cfg["warmup"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    start, n, losses = time.perf_counter(), data["ids"].shape[0], []
    model.train()
    for step in tqdm(range(steps), desc="train-text", disable=not progress):
        idx = torch.randint(n, (bs,), generator=gen)
        batch = pick(data, idx, torch.rand(bs, generator=gen) < float(cfg["context_dropout"]))
        masked = corrupt(batch["ids"], batch["content"], mask_token, gen)
        loss, _ = batch_loss(model, batch, masked, mask_token, float(cfg["visible_weight"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    metrics = {
        "train_loss": sum(losses[-50:]) / len(losses[-50:]),
        "test": evaluate(model, test, mask_token, seed),
        "train": evaluate(model, data, mask_token, seed),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(vocab), "train_rows": n, "steps": steps, "train_seconds": round(seconds, 1),
    }
    model.eval()
    return {"model": model, "vocab": vocab, "merges": merges, "metrics": metrics}


def main() -> None:
    """Train from params.yaml (base.seed, text_model) and write the checkpoint and its metrics."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    seed, cfg = int(params["base"]["seed"]), params["text_model"]
    out = train(cfg, seed)
    save_checkpoint(CHECKPOINT, out["model"], out["vocab"], out["merges"], {"seed": seed, **out["metrics"]})
    save_metrics(out["metrics"], "text_model")
    print(f"wrote {CHECKPOINT.relative_to(ROOT)}: {out['metrics']}")


if __name__ == "__main__":
    main()
