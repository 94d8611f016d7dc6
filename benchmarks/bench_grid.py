"""Benchmark dicelib's edit grid against a reference loop written as the DICE authors' code runs.

For each model: one LAI inversion (guidance on), then a 16-point lambda1 grid of edits toward a
target condition. The reference (benchmarks/reference_loop.py) keeps float32 latents of every
step, runs guidance as two forward passes and one full edit per setting; dicelib runs the grid
with `dicelib.edit_grid` (one batched forward pass per step, guidance rows in the same call) for
each store mode. Reported: seconds for the inversion, seconds per single edit, edits per second on
the grid, peak memory, and the ratios to the reference; reconstruction is checked for exactness,
and every edit token for token against the reference's (all but bfloat16, whose rounded latents
are exact for reconstruction only). Models: the embedded `shapes` checkpoint (16x16, K = 8), and the
random-weight adapters at `--size` (small: CPU; real: aMUSEd-256 16x16 / 8192 codes and
VQ-Diffusion ITHQ 32x32 / 4096 classes, a GPU job). Every time is the median of --repeats runs
after one untimed warm-up run; peak memory is the first timed run's. Results go to
benchmarks/results/bench_grid_<machine>_<date>.json (or --json).

    python benchmarks/bench_grid.py                       # CPU: shapes + small adapters
    python benchmarks/bench_grid.py --size real --device cuda
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import dicelib
from bench_adapters import PeakMemory
from reference_loop import reference_edit, reference_latents
from timing import REPEATS, add_run_options, results_path, run_device, run_meta, sync, timed, write_results

GRID = [round(0.05 + 0.06 * i, 2) for i in range(16)]  # lambda1 0.05 .. 0.95 (lambda2 = 1 - lambda1)


def _models(size: str, device: torch.device, names: list[str]) -> dict:
    """Return {name: (model, invert kwargs, source cond, target cond)} built lazily from `names`."""
    from dicelib.adapters.random_components import random_amused, random_vq_diffusion

    out = {}
    for name in names:
        if name == "shapes":
            from dicelib.image.shapes_image_model import load_shapes_image_model

            model = load_shapes_image_model(device=device)
            kwargs = dict(method="masked", noise="mask", steps=16, tau=0.8, cfg_scale=3.0)
            src, tgt = (model.encode_prompt([p]) for p in ("a small red circle on a blue background",
                                                             "a small green circle on a blue background"))
        else:
            build = {"amused": random_amused, "vq-diffusion": random_vq_diffusion}[name]
            model = build(size, device=device)
            kwargs = dict(method=model.method, cfg_scale=model.default_cfg, tau=0.9 if model.method == "masked" else 1.0,
                          **({"noise": model.noise, "steps": 32} if model.method == "masked" else {}))
            src, tgt = model.encode_prompt(["a photo of a cat"]), model.encode_prompt(["a photo of a dog"])
        out[name] = (model, kwargs, src, tgt)
    return out




def _timed(device: torch.device, repeats: int, fn):
    """Return (fn(), median seconds of `repeats` runs after a warm-up, peak MiB of the first timed run)."""
    fn()  # warm-up
    sync(device)
    with PeakMemory(device) as mem:
        fn()
        sync(device)
    out, seconds, _ = timed(fn, device, repeats, warmup=0)
    return out, seconds, mem.peak / 2**20


def bench(name: str, model, kwargs: dict, src, tgt, stores: list[str], seed: int,
          repeats: int = REPEATS) -> list[dict]:
    """Return one row for the reference and one per store mode, with ratios to the reference."""
    device = model.device
    x0 = torch.randint(model.num_classes, (1, model.num_positions), generator=torch.Generator().manual_seed(seed)).to(device)
    gens = lambda: [torch.Generator(device=device).manual_seed(seed + 1) for _ in GRID]  # noqa: E731
    settings = [{"lambda1": lam, "cond": tgt} for lam in GRID]
    inv32 = dicelib.invert(model, x0, src, pseudo_inverse="lai", generator=torch.Generator(device=device).manual_seed(seed), **kwargs)
    model.logits(x0, torch.zeros(1, device=device), src)  # warm-up
    latents, t_inv, m_inv = _timed(device, repeats, lambda: reference_latents(model, inv32))
    ref, t_grid, m_grid = _timed(device, repeats, lambda: [reference_edit(model, inv32, latents, tgt, lam, None, g)
                                                  for lam, g in zip(GRID, gens())])
    rows = [{"model": name, "impl": "reference", "store": "float32", "invert_s": t_inv, "edit_s": t_grid / len(GRID),
             "grid_edits_per_s": len(GRID) / t_grid, "peak_mib": max(m_inv, m_grid), "recon_exact": True,
             "same_edits": True}]
    for store in stores:
        inv, t_inv, m_inv = _timed(device, repeats, lambda: dicelib.invert(model, x0, src, pseudo_inverse="lai", store=store,
                                                                  generator=torch.Generator(device=device).manual_seed(seed), **kwargs))
        _, t_one, _ = _timed(device, repeats, lambda: dicelib.edit(model, inv, tgt, lambda1=GRID[0], generator=gens()[0]))
        out, t_grid, m_grid = _timed(device, repeats, lambda: dicelib.edit_grid(model, inv, settings, generators=gens()))
        rows.append({"model": name, "impl": "dicelib", "store": store, "invert_s": t_inv, "edit_s": t_one,
                     "grid_edits_per_s": len(GRID) / t_grid, "peak_mib": max(m_inv, m_grid),
                     "recon_exact": torch.equal(dicelib.reconstruct(model, inv), x0),
                     "same_edits": all(torch.equal(a, b) for a, b in zip(out, ref))})
    base = rows[0]
    for r in rows:
        r.update(tokens=model.num_positions, classes=model.num_classes, steps=inv32.num_edit_steps,
                 grid_speedup=r["grid_edits_per_s"] / base["grid_edits_per_s"], edit_speedup=base["edit_s"] / r["edit_s"])
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="shapes,amused,vq-diffusion")
    p.add_argument("--size", default="small", choices=["small", "real"], help="random adapters' size")
    p.add_argument("--stores", default="float32,bfloat16,none")
    add_run_options(p, "bench_grid")
    a = p.parse_args(argv)
    device = run_device(a)
    rows = []
    for name, (model, kwargs, src, tgt) in _models(a.size, device, a.models.split(",")).items():
        with torch.no_grad():
            rows += bench(name, model, kwargs, src, tgt, a.stores.split(","), a.seed, a.repeats)
    print(f"device: {device}, threads: {torch.get_num_threads()}, 16-point lambda grid, guidance on, LAI")
    print(f"{'model':13s} {'impl':9s} {'store':8s} {'D':>5s} {'K':>5s} {'steps':>5s} {'invert s':>8s} {'edit s':>7s} "
          f"{'grid edits/s':>12s} {'x ref':>6s} {'peak MiB':>8s} recon-exact same-edits")
    for r in rows:
        print(f"{r['model']:13s} {r['impl']:9s} {r['store']:8s} {r['tokens']:5d} {r['classes']:5d} {r['steps']:5d} "
              f"{r['invert_s']:8.3f} {r['edit_s']:7.3f} {r['grid_edits_per_s']:12.1f} {r['grid_speedup']:6.2f} "
              f"{r['peak_mib']:8.1f} {r['recon_exact']!s:11s} {r['same_edits']}")
    meta = run_meta(device, a.repeats, size=a.size, grid=GRID)
    out = write_results(Path(a.json) if a.json else results_path("bench_grid", device), meta, rows)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
