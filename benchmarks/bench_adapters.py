"""Benchmark DICE inversion + editing through the image adapters at their real shapes (random weights).

Real shapes: aMUSEd-256 (16x16 tokens, codebook 8192, 22-layer UViT; masked method, 32 steps),
VQ-Diffusion ITHQ (32x32 tokens, 4096 classes, 36 layers; multinomial method, T = 100) and Paella v3
(512 px: 128x128 tokens, codebook 8192, the 1.0 B-parameter PaellaNet with ByT5-XL and CLIP ViT-H
text; masked method with uniform renoising, 32 steps; `--models paella`, a GPU job). `--small`
shrinks each to CPU-friendly sizes. For each model and store mode it reports seconds for one
inversion and one edit (guidance on, as in the paper; the median of --repeats after one untimed
warm-up inversion and edit), the inversion's size, peak memory (CUDA: max allocated; CPU: peak RSS
growth sampled every 5 ms, over one timed inversion and edit) and whether reconstruction was exact.
Results go to benchmarks/results/bench_adapters_<machine>_<date>.json (or --json).

    python benchmarks/bench_adapters.py --small            # CPU, seconds
    python benchmarks/bench_adapters.py --device cuda      # real sizes on a GPU
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import torch

import dicelib
from dicelib.adapters.random_components import random_amused, random_paella, random_vq_diffusion
from timing import add_run_options, device_label, results_path, run_device, run_meta, sync, timed, write_results


class PeakMemory:
    """Context manager measuring peak memory growth in bytes (CUDA allocator, or sampled process RSS)."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            self._proc, self._stop = psutil.Process(), threading.Event()
            self.base = self._proc.memory_info().rss
            self._max = self.base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = self._max - self.base


_sync = sync  # the name bench_grid imports


def bench_model(name: str, model: object, steps: int | None, stores: list[str], batch: int, cfg: float,
                seed: int, repeats: int = 3) -> list[dict]:
    """Return one result row per store mode: median seconds for invert and edit, memory, exactness."""
    device = model.device
    gen = torch.Generator(device=device).manual_seed(seed)
    x0 = torch.randint(model.num_classes, (batch, model.num_positions), generator=gen, device=device)
    src = model.encode_prompt(["a photo of a cat"] * batch)
    tgt = model.encode_prompt(["a photo of a dog"] * batch)
    method = model.method
    opts = {"noise": model.noise} if method == "masked" else {}
    rows = []
    for store in stores:
        invert = lambda: dicelib.invert(model, x0, src, method=method, steps=steps, cfg_scale=cfg,  # noqa: E731
                                        store=store, generator=torch.Generator(device=device).manual_seed(seed), **opts)
        inv = invert()  # warm-up (kernels, allocator)
        edit = lambda: dicelib.edit(model, inv, tgt, lambda1=0.7, lambda2=0.3,  # noqa: E731
                                    generator=torch.Generator(device=device).manual_seed(seed + 1))
        edit()
        inv = None
        sync(device)
        with PeakMemory(device) as mem:  # one inversion and edit, as a user runs them; `edit` then reuses `inv`
            inv = invert()
            edit()
            sync(device)
        _, invert_s, invert_all = timed(invert, device, repeats, warmup=0)
        edited, edit_s, edit_all = timed(edit, device, repeats, warmup=0)
        recon = dicelib.edit(model, inv, src, lambda1=1.0, lambda2=0.0)
        rows.append({"model": name, "method": method, "store": store, "batch": batch, "tokens": model.num_positions,
                     "classes": model.num_classes, "steps": inv.num_edit_steps, "invert_s": invert_s, "edit_s": edit_s,
                     "total_s": invert_s + edit_s, "repeats": repeats, "invert_s_all": invert_all,
                     "edit_s_all": edit_all, "inversion_mib": inv.nbytes() / 2**20, "peak_mib": mem.peak / 2**20,
                     "exact": bool(torch.equal(recon, x0)), "edit_changed": float((edited != x0).float().mean())})
        del inv, edited, recon
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="CPU-friendly sizes instead of the real shapes")
    p.add_argument("--models", default="amused,vq-diffusion", help="comma-separated: amused, vq-diffusion, paella")
    p.add_argument("--stores", default="float32,none")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--masked-steps", type=int, default=32, help="aMUSEd and Paella inversion steps (the paper's 32)")
    add_run_options(p, "bench_adapters")
    a = p.parse_args(argv)
    device = run_device(a)
    size = "small" if a.small else "real"
    stores = a.stores.split(",")
    rows = []
    for name in a.models.split(","):
        t0 = time.perf_counter()
        builders = {"amused": (random_amused, a.masked_steps), "vq-diffusion": (random_vq_diffusion, None),
                    "paella": (random_paella, a.masked_steps)}
        if name not in builders:
            raise SystemExit(f"unknown model {name!r}; use {', '.join(builders)}")
        build, steps = builders[name]
        model = build(size, seed=a.seed, device=device)
        cfg = model.default_cfg
        params = sum(p.numel() for p in model.transformer.parameters())
        print(f"built {name} ({size}, {params / 1e6:.1f}M denoiser parameters) in {time.perf_counter() - t0:.1f}s")
        for row in bench_model(name, model, steps, stores, a.batch, cfg, a.seed, a.repeats):
            rows.append({**row, "size": size, "denoiser_params_m": params / 1e6})
        del model
    header = f"{'model':13s} {'size':5s} {'store':8s} {'tokens':>6s} {'K':>5s} {'steps':>5s} {'invert s':>9s} " \
             f"{'edit s':>8s} {'total s':>8s} {'inv MiB':>8s} {'peak MiB':>9s} exact"
    print(f"\ndevice: {device_label(device)}, "
          f"threads: {torch.get_num_threads()}, batch: {a.batch}, guidance on, median of {a.repeats} after a warm-up")
    print(header)
    for r in rows:
        print(f"{r['model']:13s} {r['size']:5s} {r['store']:8s} {r['tokens']:6d} {r['classes']:5d} {r['steps']:5d} "
              f"{r['invert_s']:9.2f} {r['edit_s']:8.2f} {r['total_s']:8.2f} {r['inversion_mib']:8.1f} "
              f"{r['peak_mib']:9.1f} {r['exact']}")
    meta = run_meta(device, a.repeats, load_average_1m=os.getloadavg()[0])
    out = write_results(Path(a.json) if a.json else results_path("bench_adapters", device), meta, rows)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
