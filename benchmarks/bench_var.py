"""Benchmark VARIN inversion + editing through the VAR adapter (random weights), with and without its KV cache.

Real size: VAR-d16 (16 blocks, width 1024, 310 M parameters) over 10 scales, 680 tokens, K = 4096, and
the published tokenizer (256 px) for encoding and decoding; a GPU job. `--small`: 4 blocks, width 256,
7 scales (155 tokens), K = 1024, 32 px images, on the CPU. The source is a random image encoded by
the tokenizer; inversion runs under guidance with VAR's linear ramp (cfg 1.5) and LAI latents; the
edit changes the class with the registry's var-d16 settings (start scale 4, lambda1 fading 1 -> 0).
For each store mode and cache setting it reports the median seconds of one inversion and one edit
(after one untimed warm-up), the inversion's size, peak memory (as bench_adapters measures it), and
whether editing with the source class, lambda1 = 1, lambda2 = 0 reproduced the source maps.
Results go to benchmarks/results/bench_var_<machine>_<date>.json (or --json).

    python benchmarks/bench_var.py --small --threads 1     # CPU, seconds
    python benchmarks/bench_var.py --device cuda           # VAR-d16 real size on a GPU
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import dicelib
from bench_adapters import PeakMemory
from dicelib.adapters.random_components import random_var
from timing import add_run_options, device_label, results_path, run_device, run_meta, sync, timed, write_results

CFG, MARGIN, START_SCALE = 1.5, 18.0, 4  # the registry's var-d16 settings (dicelib/registry.py)
SOURCE, TARGET = "tabby cat", "tiger"


def bench(model: dicelib.adapters.VAR, stores: list[str], batch: int, seed: int, repeats: int) -> list[dict]:
    """Return one row per store mode: median seconds of invert and edit, sizes, memory, exactness."""
    device = model.device
    image = torch.rand(batch, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    x0 = model.encode_image(image)
    sync(device)
    encode_s = time.perf_counter() - t0
    src, tgt = model.encode_prompt([SOURCE] * batch), model.encode_prompt([TARGET] * batch)
    tokens = sum(m.shape[1] for m in x0)
    rows = []
    for store in stores:
        def invert():
            return dicelib.invert(model, x0, src, method="next_scale", pseudo_inverse="lai", cfg_scale=CFG,
                                  cfg_schedule="linear", margin=MARGIN, store=store,
                                  generator=torch.Generator(device=device).manual_seed(seed))

        inv = invert()  # warm-up

        def edit():
            return dicelib.edit(model, inv, tgt, lambda1=1.0, lambda1_end=0.0, lambda_schedule="linear",
                                start_scale=START_SCALE, generator=torch.Generator(device=device).manual_seed(seed + 1))

        edit()
        inv = None
        sync(device)
        with PeakMemory(device) as mem:
            inv = invert()
            edit()
            sync(device)
        _, invert_s, invert_all = timed(invert, device, repeats, warmup=0)
        edited, edit_s, edit_all = timed(edit, device, repeats, warmup=0)
        recon = dicelib.edit(model, inv, src, lambda1=1.0, lambda2=0.0)
        rows.append({"store": store, "kv_cache": model.kv_cache, "batch": batch, "tokens": tokens,
                     "scales": len(model.scales), "classes": model.num_classes, "invert_s": invert_s, "edit_s": edit_s,
                     "total_s": invert_s + edit_s, "repeats": repeats, "invert_s_all": invert_all,
                     "edit_s_all": edit_all, "encode_s": encode_s, "inversion_mib": inv.nbytes() / 2**20,
                     "peak_mib": mem.peak / 2**20,
                     "exact": all(torch.equal(a, b) for a, b in zip(recon, x0)),
                     "edit_changed": float((torch.cat(edited, 1) != torch.cat(x0, 1)).float().mean())})
        del inv, edited, recon
        model.clear_cache()
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="CPU-friendly size instead of VAR-d16's real one")
    p.add_argument("--stores", default="float32,none")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--cache", default="on,off", help="comma-separated: on (KV cache), off (recompute the prefix)")
    add_run_options(p, "bench_var")
    a = p.parse_args(argv)
    device = run_device(a)
    size = "small" if a.small else "real"
    rows = []
    for cache in a.cache.split(","):
        if cache not in ("on", "off"):
            raise SystemExit(f"unknown --cache value {cache!r}; use on, off")
        t0 = time.perf_counter()
        model = random_var(size, seed=a.seed, device=device, kv_cache=cache == "on")
        params = sum(q.numel() for q in model.net.parameters())
        print(f"built VAR ({size}, {params / 1e6:.1f}M transformer parameters) in {time.perf_counter() - t0:.1f}s")
        for row in bench(model, a.stores.split(","), a.batch, a.seed, a.repeats):
            rows.append({**row, "size": size, "transformer_params_m": params / 1e6})
        del model
    print(f"\ndevice: {device_label(device)}, "
          f"threads: {torch.get_num_threads()}, batch: {a.batch}, cfg {CFG} linear ramp, median of {a.repeats} after a warm-up")
    print(f"{'size':5s} {'cache':5s} {'store':8s} {'tokens':>6s} {'K':>5s} {'invert s':>9s} {'edit s':>8s} {'total s':>8s} "
          f"{'inv MiB':>8s} {'peak MiB':>9s} exact")
    for r in rows:
        print(f"{r['size']:5s} {'on' if r['kv_cache'] else 'off':5s} {r['store']:8s} {r['tokens']:6d} {r['classes']:5d} "
              f"{r['invert_s']:9.3f} {r['edit_s']:8.3f} {r['total_s']:8.3f} {r['inversion_mib']:8.1f} "
              f"{r['peak_mib']:9.1f} {r['exact']}")
    meta = run_meta(device, a.repeats, load_average_1m=os.getloadavg()[0])
    out = write_results(Path(a.json) if a.json else results_path("bench_var", device), meta, rows)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
