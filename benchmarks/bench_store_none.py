"""Benchmark the cost of store="none" (latents recomputed while editing) against the stored mode, on CPU.

For each model and pseudo-inverse it inverts once with store="float32" and once with store="none" and
times, from each, one edit (median of --repeats), a --grid-point lambda1 grid run as one `edit` call per
point, and the same grid as one `edit_grid` call (when this dicelib has it); it prints seconds, the
ratios none / float32, model calls per editing step, and whether all results agree. Every time
follows one untimed warm-up run; results go to benchmarks/results/store_none_<machine>_<date>.json.
Models: a RandomDenoiser toy at K=1024, D=256 (cheap forward: the recomputation's own work shows) and
the random aMUSEd adapter ("small", 8x8 tokens, K=256; a transformer forward).

    PYTHONPATH=. python benchmarks/bench_store_none.py
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import dicelib
from dicelib.core.toy import RandomDenoiser
from timing import results_path, timed, write_results


class Counting:
    """Wraps a denoiser and counts its forward calls (every other attribute is the model's)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def logits(self, x, t, cond):
        self.calls += 1
        return self.model.logits(x, t, cond)


def seconds(run, repeats: int) -> float:
    """Return the median wall seconds of `run()` over `repeats` runs after one untimed warm-up run."""
    return timed(run, torch.device("cpu"), repeats, warmup=1)[1]


def bench(name: str, model, x0, src, tgt, pseudo_inverses: list[str], cfg: float | None, repeats: int,
          grid: int) -> list[dict]:
    """Return one row per pseudo-inverse: seconds of one edit and of a `grid`-point lambda1 grid (one edit call
    per point, and one edit_grid call when this dicelib has it) for store float32 and none, their ratios, and
    model calls per editing step."""
    rows = []
    lambdas = [round(0.3 + 0.6 * j / max(grid - 1, 1), 4) for j in range(grid)]
    gens = lambda: [torch.Generator().manual_seed(1) for _ in lambdas]  # noqa: E731
    counting = Counting(model)
    for pi in pseudo_inverses:
        row = {"model": name, "pseudo_inverse": pi, "cfg_scale": cfg, "classes": model.num_classes,
               "tokens": x0.shape[1], "batch": x0.shape[0], "grid": grid}
        outs: dict[str, dict[str, list]] = {}
        for store in ("float32", "none"):
            inv = dicelib.invert(model, x0, src, pseudo_inverse=pi, cfg_scale=cfg, store=store, noise="mask",
                                 generator=torch.Generator().manual_seed(0))
            steps = inv.num_edit_steps
            one = lambda m=model: dicelib.edit(m, inv, tgt, lambda1=0.7, lambda2=0.3,  # noqa: E731
                                               generator=torch.Generator().manual_seed(1))
            loop = lambda m=model: [dicelib.edit(m, inv, tgt, lambda1=v, generator=g)  # noqa: E731
                                    for v, g in zip(lambdas, gens())]
            outs[store] = {"edit": [one()]}
            row[f"edit_s_{store}"] = seconds(one, repeats)
            row[f"loop_s_{store}"] = seconds(loop, 1)
            counting.calls = 0
            outs[store]["loop"] = loop(counting)
            row[f"loop_calls_per_step_{store}"] = counting.calls / steps
            if hasattr(dicelib, "edit_grid"):
                many = lambda m=model: dicelib.edit_grid(m, inv, [{"lambda1": v} for v in lambdas],  # noqa: E731
                                                         conds=[tgt] * grid, generators=gens())
                row[f"grid_s_{store}"] = seconds(many, repeats)
                counting.calls = 0
                outs[store]["grid"] = many(counting)
                row[f"grid_calls_per_step_{store}"] = counting.calls / steps
        for kind in ("edit", "loop", "grid"):
            if f"{kind}_s_none" in row:
                row[f"{kind}_ratio_none_float32"] = row[f"{kind}_s_none"] / row[f"{kind}_s_float32"]
        row["none_equals_float32"] = all(torch.equal(a, b) for kind, xs in outs["none"].items()
                                         for a, b in zip(xs, outs["float32"][kind]))
        if "grid" in outs["float32"]:
            row["grid_equals_loop"] = all(torch.equal(a, b) for store in outs
                                          for a, b in zip(outs[store]["grid"], outs[store]["loop"]))
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default="toy,amused")
    p.add_argument("--pseudo-inverses", default="lai,onehot")
    p.add_argument("--grid", type=int, default=16, help="points of the lambda1 grid")
    p.add_argument("--json", default="", help="default: benchmarks/results/store_none_<machine>_<date>.json")
    p.add_argument("--note", default="", help="what code was measured (kept in the JSON's meta)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    pis, rows = a.pseudo_inverses.split(","), []
    for name in a.models.split(","):
        if name == "toy":
            model = RandomDenoiser(1024, 256, seed=0)
            gen = torch.Generator().manual_seed(0)
            x0 = torch.randint(1024, (1, 256), generator=gen)
            src, tgt = torch.tensor([0]), torch.tensor([1])
            for cfg in (None, 3.0):
                rows += bench(name, model, x0, src, tgt, pis, cfg, a.repeats, a.grid)
        elif name == "amused":
            from dicelib.adapters.random_components import random_amused

            model = random_amused("small", seed=0, device="cpu")
            x0 = torch.randint(model.num_classes, (1, model.num_positions), generator=torch.Generator().manual_seed(0))
            src, tgt = model.encode_prompt(["a photo of a cat"]), model.encode_prompt(["a photo of a dog"])
            rows += bench(name, model, x0, src, tgt, pis, 10.0, a.repeats, a.grid)
        else:
            raise SystemExit(f"unknown model {name!r}; use toy, amused")
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "note": a.note, "load_average_1m": os.getloadavg()[0], "repeats": a.repeats, "warmup": 1,
            "statistic": "median"}
    out = write_results(Path(a.json) if a.json else results_path("store_none", torch.device("cpu")), meta, rows)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
