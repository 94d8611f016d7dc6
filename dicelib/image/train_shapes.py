"""Return a trained `shapes` denoiser and its report (the `train-shapes` DVC stage).

Training data is drawn fresh from the ShapesBench generator for every batch (seeded), skipping
any scene whose prompt is held out (a val or test case's prompt), so prompt-following is
measured on prompts the model never saw. Each image is corrupted at a level t ~ U(0, 1) by one of
the corruptions the model must undo at inference, drawn with `kind_probs`:
- uniform renoise (masked method, noise="uniform"): t of the pixels get a uniform random colour;
- [MASK] absorption (masked method, noise="mask"): t of the pixels masked;
- mask-and-replace (multinomial, the model's own schedule): t of the pixels corrupted, a fixed
  share of them replaced by uniform colours and the rest masked.
The default is [MASK] only: a renoise share teaches the model to distrust visible pixels (it then
rewrites some of a clean image), and the masked method with [MASK] noise is what the image track runs.
Targets are the exact posteriors p(x0 | x_t, t, prompt) of `shapes_oracle` under the row's own
corruption, computed online (`soft_targets`; about 1.4 ms per image), instead of the one-hot x0:
the same minimiser with less variance (they differ from one-hot only at high noise). Rows whose
prompt is dropped (null prompt, probability `cond_drop`, for classifier-free guidance) keep the
one-hot x0 (the null posterior is exact too, but a hundred times dearer). The loss is the
cross-entropy at every pixel (DICE re-predicts every position at every step).

Quality on held-out prompts (never trained on): `prompt_match` (samples drawn with DICE Alg. 1's
own order, parsed back exactly), `prompt_match_tolerant` (`shapesbench.matches_prompt_tolerant`:
a few wrong pixels allowed) and `kl_mask10/50/90`, the per-pixel KL from the oracle's posterior
to the model's on held-out scenes with 10 / 50 / 90 % of the pixels masked (mean over masked
pixels). The same numbers at a few points during training form the quality curve.

Run: `python -m dicelib.image.train_shapes --steps 1500 ...` (see `--help`); writes the checkpoint,
the loss and quality curves (DVC plot CSVs), a sample-grid figure, every number in
reports/tables/train_shapes.csv and the headline three in reports/metrics/train_shapes.json.
Wall-clock time is printed, not recorded, so reruns write the same bytes.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import shapesbench as sb
from . import benchmark_build as sbd
from ..config import FIGURES, METRICS, PLOTS, TABLES
from .. import kernels
from ..io import Stage, atomic_write, run_stage, stage_params, typed
from .plotting import loss_curve, save_png, token_grid
from ..core.regeneration import ORDERS, regenerate
from ..core.schedules import MASK_SCHEDULES
from ..errors import Relation, Rule, boolean, choice, integer, is_number, number
from .shapes_model import CHECKPOINT, ShapesConfig, ShapesDenoiser, encode, load, save
from .shapes_oracle import OracleConfig, ShapesOracle


@dataclass(frozen=True)
class TrainConfig:
    """Training settings of the `shapes` denoiser."""

    seed: int = 0  # seeds the data stream, the corruption and the initialisation
    steps: int = 1600  # optimiser steps
    batch_size: int = 32  # images per step
    lr: float = 2e-3  # peak AdamW learning rate (linear warm-up, cosine decay to 5 %)
    warmup: int = 100  # warm-up steps
    weight_decay: float = 0.01  # AdamW weight decay
    cond_drop: float = 0.15  # probability of the null prompt (classifier-free guidance)
    kind_probs: tuple[float, float, float] = (0.0, 1.0, 0.0)  # renoise / [MASK] / mask-and-replace
    level_power: float = 1.0  # t = 1 - (1 - v)^power, v ~ U(0, 1): power > 1 trains more at high noise
    visible_weight: float = 0.3  # loss weight of uncorrupted pixels relative to corrupted ones
    soft_targets: bool = True  # the oracle's exact posteriors as targets (else the one-hot x0)
    eval_every: int = 250  # steps between points of the quality curve (0: none)


def scene_batch(rng: np.random.Generator, n: int, heldout: set[str]) -> tuple[np.ndarray, list[str]]:
    """Return n random scenes' tokens [n, 256] and prompts, none of them with a held-out prompt."""
    tokens, prompts = [], []
    while len(prompts) < n:
        scene = sb.random_scene(rng)
        text = sb.prompt(scene)
        if text in heldout:
            continue
        tokens.append(sb.render(scene).ravel())
        prompts.append(text)
    return np.stack(tokens), prompts


KINDS = ("uniform", "mask", "mask_replace")  # the corruption kinds of `kind_probs`, as `shapes_oracle` names them


def corrupt(x0: torch.Tensor, k: int, gen: torch.Generator, kind_probs: tuple[float, float, float] = (0.35, 0.35, 0.3),
            replace_share: float = 0.1, level_power: float = 1.0,
            return_kind: bool = False) -> tuple[torch.Tensor, ...]:
    """Return (x_t [B, D] in 0..K, t [B]) (and the kind index per row [B] into KINDS with `return_kind`):
    t ~ U(0,1) (stratified) of the pixels corrupted, per row by uniform renoise, [MASK] (id K), or
    mask-and-replace (a `replace_share` of them replaced, the rest masked: exactly what the model's
    transition schedule does at t = step / T)."""
    b, d = x0.shape
    v = (torch.randperm(b, generator=gen) + torch.rand(b, generator=gen)) / b  # stratified: low-variance levels
    t = 1 - (1 - v) ** level_power  # power > 1 favours high noise, where sampling must commit to objects
    kind = torch.multinomial(torch.tensor(kind_probs), b, replacement=True, generator=gen)
    share = torch.where(kind == 0, 1.0, torch.where(kind == 1, 0.0, replace_share))  # replaced share per row
    r = torch.rand(b, d, generator=gen)
    corrupted = r < t.view(-1, 1)
    replaced = corrupted & (torch.rand(b, d, generator=gen) < share.view(-1, 1))
    x = torch.where(replaced, torch.randint(k, (b, d), generator=gen), x0)
    x = torch.where(corrupted & ~replaced, torch.full_like(x0, k), x)
    return (x, t, kind) if return_kind else (x, t)


def denoising_loss(logits: torch.Tensor, x0: torch.Tensor, corrupted: torch.Tensor, visible_weight: float,
                   target: torch.Tensor | None = None) -> torch.Tensor:
    """Return the batch mean of (mean CE over corrupted pixels + visible_weight * mean CE over the others).

    The CE is against `target` [B, D, K] (probabilities, e.g. the oracle's posterior) when given,
    else against the one-hot x0.

    Averaging over the corrupted pixels of each image (not over all pixels) weighs every noise
    level alike, as the masked-diffusion ELBO does; a plain mean over all pixels would weigh an
    image by its corruption level t and starve the low-noise levels, where shapes must become
    pixel-exact. Visible pixels keep some weight because DICE re-predicts every position.
    (Uniform replacements that drew the original colour count as visible here.)
    """
    if target is None:
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x0, reduction="none")  # [B, D]
    else:
        ce = -(target * torch.log_softmax(logits.float(), -1)).sum(-1)
    c = corrupted.float()
    per_corrupted = (ce * c).sum(1) / c.sum(1).clamp(min=1)
    per_visible = (ce * (1 - c)).sum(1) / (1 - c).sum(1).clamp(min=1)
    return (per_corrupted + visible_weight * per_visible).mean()


def oracle_targets(oracle: ShapesOracle, xt: torch.Tensor, t: torch.Tensor, kind: torch.Tensor, prompts: list[str],
                   dropped: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Return training targets [B, D, K]: the oracle's exact posterior under each row's own corruption kind,
    and the one-hot x0 on rows whose prompt was dropped."""
    target = torch.nn.functional.one_hot(x0, oracle.num_classes).double()
    for i, name in enumerate(KINDS):
        rows = torch.nonzero((kind == i) & ~dropped).flatten()
        if len(rows):
            target[rows] = oracle.marginals(xt[rows], t[rows], [prompts[j] for j in rows.tolist()], kinds=(name,))
    return target.float()


def train(cfg: TrainConfig, model_cfg: ShapesConfig, heldout: set[str], device: str = "cpu",
          progress: bool = True, evaluate: Callable[[ShapesDenoiser], dict] | None = None,
          curve: list[dict] | None = None) -> tuple[ShapesDenoiser, pd.DataFrame, float]:
    """Return (model, loss log with columns step/loss/lr, training seconds).

    With `evaluate`, `curve` receives {"step": s, **evaluate(model)} every `cfg.eval_every` steps and
    after the last one (evaluation time is not counted as training time).
    """
    torch.manual_seed(cfg.seed)  # parameter initialisation
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    model = ShapesDenoiser(model_cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    null = encode([""], model_cfg.prompt_len)
    oracle = ShapesOracle(config=OracleConfig(model_cfg.prompt_len, model_cfg.num_steps, model_cfg.replace_share))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * p)))

    def checkpoint(step: int) -> None:
        if evaluate is not None and curve is not None:
            curve.append({"step": step, **evaluate(model.eval())})
            model.train()

    log, seconds = [], 0.0
    for step in tqdm(range(cfg.steps), desc="train shapes", disable=not progress, mininterval=5):
        if cfg.eval_every and step % cfg.eval_every == 0 and step:
            checkpoint(step)
        start = time.perf_counter()
        tokens, prompts = scene_batch(rng, cfg.batch_size, heldout)
        x0 = torch.from_numpy(tokens).long()
        xt, t, kind = corrupt(x0, model_cfg.num_classes, gen, cfg.kind_probs, model_cfg.replace_share, cfg.level_power,
                              return_kind=True)
        words = encode(prompts, model_cfg.prompt_len)
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.cond_drop
        words = torch.where(drop.view(-1, 1), null, words)
        target = oracle_targets(oracle, xt, t, kind, prompts, drop, x0).to(device) if cfg.soft_targets else None
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = model(xt.to(device), t.to(device), words.to(device))
        loss = denoising_loss(logits, x0.to(device), (xt != x0).to(device), cfg.visible_weight, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seconds += time.perf_counter() - start
        log.append({"step": step, "loss": loss.item(), "lr": lr_at(step)})
    checkpoint(cfg.steps)
    return model.eval(), pd.DataFrame(log), seconds


def heldout_scenes(cases: pd.DataFrame, grids: dict[str, np.ndarray], n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """Return up to n distinct held-out scenes (val and test cases' sources and targets): tokens [n, D], prompts."""
    held = (cases["split"] != "train").to_numpy()
    tokens = np.concatenate([grids["source"][held], grids["target"][held]]).reshape(-1, sb.SIZE * sb.SIZE)
    prompts = list(cases["source_prompt"][held]) + list(cases["target_prompt"][held])
    _, first = np.unique(tokens, axis=0, return_index=True)
    pick = np.sort(first)[np.random.default_rng(seed).permutation(len(first))[:n]]
    return torch.from_numpy(tokens[pick].astype(np.int64)), [prompts[i] for i in pick]


@torch.no_grad()
def oracle_kl(model: ShapesDenoiser, oracle: ShapesOracle, x0: torch.Tensor, prompts: list[str],
              fractions: tuple[float, ...] = (0.1, 0.5, 0.9), seed: int = 0) -> dict[str, float]:
    """Return {"kl_mask<pct>": mean KL(oracle || model) over the masked pixels} with exactly `fraction` of
    each image's pixels masked (uniformly chosen, seeded) and t = fraction."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for f in fractions:
        d = x0.shape[1]
        order = torch.rand(x0.shape, generator=gen).argsort(1)
        masked = torch.zeros_like(x0, dtype=torch.bool).scatter_(1, order[:, :round(f * d)], True)
        xt = torch.where(masked, oracle.mask_id, x0)
        t = torch.full((len(x0),), f)
        p = oracle.marginals(xt, t, prompts, kinds=("mask",))
        logq = torch.log_softmax(model.logits(xt.to(model.device), t.to(model.device), prompts).double().cpu(), -1)
        kl = (p * (torch.log(p.clamp(min=1e-300)) - logq)).sum(-1)  # [N, D]
        out[f"kl_mask{round(100 * f)}"] = round(float(kl[masked].mean()), 4)
    return out


def prompt_following(model: ShapesDenoiser, prompts: list[str], steps: int = 32, cfg_scale: float = 3.0,
                     temperature: float = 1.0, seed: int = 0, batch: int = 128, order: str = "random",
                     mask_schedule: str = "cosine") -> tuple[np.ndarray, dict]:
    """Return (samples [N, 16, 16], scores) for `prompts`.

    Scores: prompt_match (the exact parser reads back the prompted background colour and the
    object colours and shapes), prompt_match_tolerant (the tolerant parser: a few wrong pixels
    allowed), prompt_match_with_size (exact, and sizes), and looser diagnostics:
    background_match (most frequent colour), colours_match (the set of other colours present),
    unparsed_fraction (images with a component that matches no shape template).
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        cond = encode(chunk, model.config.prompt_len).to(model.device)
        out.append(regenerate(model, cond, steps, cfg_scale, temperature, mask_schedule=mask_schedule, generator=gen,
                              order=order).cpu().numpy())
    samples = np.concatenate(out).reshape(-1, sb.SIZE, sb.SIZE).astype(np.uint8)
    match = [sb.matches_prompt(s, p) for s, p in zip(samples, prompts)]
    tolerant = [sb.matches_prompt_tolerant(s, p) for s, p in zip(samples, prompts)]
    strict = [sb.matches_prompt(s, p, sizes=True) for s, p in zip(samples, prompts)]
    unparsed = [sb.parse(s)["unknown"] > 0 for s in samples]
    bg = [np.bincount(s.ravel(), minlength=sb.NUM_CLASSES).argmax() == sb.COLOURS.index(sb.parse_prompt(p)[0])
          for s, p in zip(samples, prompts)]
    colours = [colour_set(s) == {c for _, c, _ in sb.parse_prompt(p)[1]} for s, p in zip(samples, prompts)]
    return samples, {"prompt_match": float(np.mean(match)), "prompt_match_tolerant": float(np.mean(tolerant)),
                     "prompt_match_with_size": float(np.mean(strict)),
                     "background_match": float(np.mean(bg)), "colours_match": float(np.mean(colours)),
                     "unparsed_fraction": float(np.mean(unparsed))}


def colour_set(tokens: np.ndarray) -> set[str]:
    """Return the names of the non-background colours present in an image (a looser check than `parse`)."""
    counts = np.bincount(np.asarray(tokens).ravel(), minlength=sb.NUM_CLASSES)
    return {sb.COLOURS[c] for c in np.flatnonzero(counts) if c != counts.argmax()}


def _probs(text: str) -> tuple[float, float, float] | str:
    """Return three floats from "a,b,c", or `text` itself when it is not that (the params check names it)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        return text
    return values if len(values) == 3 else text


def _flag(text: str) -> bool | str:
    """Return True/False for true/false, 1/0, yes/no; else `text` itself (the params check names it)."""
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.lower())
    return text if value is None else value


POSITIVE, COUNT = integer(1), integer(0)
PARAMS = stage_params(  # the train_shapes group of params.yaml (and base.seed), checked before any work
    "train_shapes", "seed steps",
    Relation(("dim", "heads"), "dim divisible by heads", lambda d, h: d % h == 0),
    Relation(("patch",), f"a patch size dividing the image side {sb.SIZE}", lambda p: sb.SIZE % p == 0),
    batch_size=POSITIVE, lr=number(0, open_lo=True), warmup=COUNT, cond_drop=number(0, 1), level_power=number(0, open_lo=True),
    visible_weight=number(0),
    kind_probs=Rule("three numbers >= 0, not all 0 (renoise,mask,mask-and-replace)",
                    lambda v: isinstance(v, tuple) and len(v) == 3 and all(is_number(x) and x >= 0 for x in v) and sum(v) > 0),
    soft_targets=boolean(), eval_every=COUNT, patch=POSITIVE, pixel_dim=POSITIVE, conv_depth=COUNT, dim=POSITIVE,
    depth=POSITIVE, heads=POSITIVE, num_steps=POSITIVE, replace_share=number(0, 1), eval_prompts=POSITIVE,
    eval_scenes=POSITIVE, curve_prompts=POSITIVE, eval_steps=POSITIVE, eval_cfg=number(), weight_decay=number(0),
    eval_temperature=number(0, open_lo=True), eval_order=choice(ORDERS), eval_schedule=choice(tuple(MASK_SCHEDULES)))


def main(argv: list[str] | None = None) -> dict:
    """Train the shapes model, evaluate it on held-out prompts against the oracle, write every output."""
    p = argparse.ArgumentParser(description=main.__doc__)
    for f in TrainConfig.__dataclass_fields__.values():
        if f.name == "kind_probs":
            p.add_argument("--kind-probs", type=_probs, default=f.default, help="renoise,mask,mask-and-replace")
        elif f.type in (bool, "bool"):
            p.add_argument(f"--{f.name.replace('_', '-')}", type=_flag, default=f.default)
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=typed(type(f.default)), default=f.default)
    for name in ("patch", "pixel_dim", "conv_depth", "dim", "depth", "heads", "num_steps"):
        p.add_argument(f"--{name.replace('_', '-')}", type=typed(int), default=getattr(ShapesConfig(), name))
    p.add_argument("--replace-share", type=typed(float), default=ShapesConfig().replace_share)
    p.add_argument("--eval-prompts", type=typed(int), default=120, help="held-out prompts sampled for prompt_match")
    p.add_argument("--eval-scenes", type=typed(int), default=120, help="held-out scenes for the KL to the oracle")
    p.add_argument("--curve-prompts", type=typed(int), default=32, help="held-out prompts per point of the quality curve")
    p.add_argument("--eval-steps", type=typed(int), default=64)
    p.add_argument("--eval-cfg", type=typed(float), default=1.0)
    p.add_argument("--eval-temperature", type=typed(float), default=1.0)
    p.add_argument("--eval-order", default="resample", help="regeneration order: resample (DICE Alg. 1), random or confidence")
    p.add_argument("--eval-schedule", default="cosine", help="masking schedule of the sampler")
    p.add_argument("--data", type=Path, default=sbd.BENCH_DIR)
    p.add_argument("--out", type=Path, default=CHECKPOINT)
    p.add_argument("--metrics", type=Path, default=METRICS / "train_shapes.json")
    p.add_argument("--table", type=Path, default=TABLES / "train_shapes.csv")
    p.add_argument("--plot", type=Path, default=PLOTS / "train_shapes_loss.csv")
    p.add_argument("--quality-plot", type=Path, default=PLOTS / "train_shapes_quality.csv")
    p.add_argument("--figure", type=Path, default=FIGURES / "train_shapes_samples.png")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    PARAMS.check(**{k: getattr(a, k) for k in PARAMS.rules})
    cfg = TrainConfig(**{k: getattr(a, k) for k in TrainConfig.__dataclass_fields__})
    model_cfg = ShapesConfig(patch=a.patch, pixel_dim=a.pixel_dim, conv_depth=a.conv_depth, dim=a.dim, depth=a.depth,
                             heads=a.heads, num_steps=a.num_steps, replace_share=a.replace_share)
    cases, grids = sbd.load(a.data)
    heldout = sbd.heldout_prompts(cases)
    eval_prompts = sorted(heldout)
    eval_prompts = [eval_prompts[i] for i in np.random.default_rng(a.seed).permutation(len(eval_prompts))[:a.eval_prompts]]
    kl_x0, kl_prompts = heldout_scenes(cases, grids, a.eval_scenes, a.seed)
    oracle = ShapesOracle(config=OracleConfig(model_cfg.prompt_len, model_cfg.num_steps, model_cfg.replace_share))
    sampler = dict(steps=a.eval_steps, cfg_scale=a.eval_cfg, temperature=a.eval_temperature, seed=a.seed,
                   order=a.eval_order, mask_schedule=a.eval_schedule)

    def quality(model: ShapesDenoiser, prompts: list[str], x0: torch.Tensor, scene_prompts: list[str]) -> dict:
        samples, q = prompt_following(model, prompts, **sampler)
        kl = oracle_kl(model, oracle, x0, scene_prompts, seed=a.seed)
        return {"prompt_match": round(q["prompt_match"], 4), "prompt_match_tolerant": round(q["prompt_match_tolerant"], 4),
                **kl, "samples": samples}

    n_curve = min(a.curve_prompts, len(eval_prompts))
    curve: list[dict] = []
    evaluate = lambda m: {k: v for k, v in quality(m, eval_prompts[:n_curve], kl_x0[:n_curve], kl_prompts[:n_curve]).items()
                          if k != "samples"}
    outputs = [a.out, a.plot, a.figure, a.figure.with_name("train_shapes_loss.png"), a.table, a.table.with_suffix(".md"),
               a.metrics, *([a.quality_plot] if cfg.eval_every else [])]
    with Stage("train-shapes", outputs) as stage:
        model, log, seconds = train(cfg, model_cfg, heldout, a.device, evaluate=evaluate if cfg.eval_every else None,
                                    curve=curve)
        out = stage.path(a.out)
        model = load(save(model, out), device=a.device)  # evaluate what users load (float16 weights)
        final = quality(model, eval_prompts, kl_x0, kl_prompts)
        samples = final.pop("samples")
        tail = log["loss"].tail(max(1, len(log) // 20)).mean()
        # wall-clock time is printed, not recorded: tracked outputs stay byte-identical across reruns
        print(f"trained {len(log)} steps in {seconds:.1f} s")
        report = {**final, "final_loss": round(float(tail), 5), "steps": cfg.steps, "eval_prompts": len(eval_prompts),
                  "eval_scenes": len(kl_x0), "parameters": sum(p.numel() for p in model.parameters())}
        save(model, out, meta={k: report[k] for k in ("prompt_match", "prompt_match_tolerant", "final_loss")})
        atomic_write(stage.path(a.plot), lambda h: log[["step", "loss"]].to_csv(h, index=False))
        if curve:
            atomic_write(stage.path(a.quality_plot), lambda h: pd.DataFrame(curve).to_csv(h, index=False))
        save_png(token_grid(samples[:32], eval_prompts[:32]), stage.path(a.figure))
        save_png(loss_curve(log), stage.path(a.figure.with_name("train_shapes_loss.png")))
        table = pd.DataFrame({"metric": list(report), "value": [str(v) for v in report.values()]})
        atomic_write(stage.path(a.table), lambda h: table.to_csv(h, index=False))
        atomic_write(stage.path(a.table.with_suffix(".md")), lambda h: h.write(table.to_markdown(index=False) + "\n"))
        atomic_write(stage.path(a.metrics), lambda h: h.write(json.dumps(headline(report), indent=2) + "\n"))
    print(json.dumps(report, indent=2))
    return report


def headline(report: dict) -> dict:
    """Return the small train_shapes.json that `dvc metrics show` compares across runs: `exact_parse` (samples
    for held-out prompts parsed back exactly: prompt_match), `tolerant` (the tolerant parser) and `kl` (KL from
    the oracle's posterior at 50 % masking); every number is in reports/tables/train_shapes.csv."""
    return {"exact_parse": report["prompt_match"], "tolerant": report["prompt_match_tolerant"], "kl": report["kl_mask50"]}


if __name__ == "__main__":
    kernels.pin_process()  # same bytes on any x86-64 CPU (docs/reproducibility.md)
    run_stage(main)
