"""Benchmark the text track's editing with the `text` model's forward pass in float32 and in bfloat16.

Notebook 05's val sweep on a slice of the val pairs: one inversion per pseudo-inverse (store "none"),
a lambda1 grid as one `edit_grid` per length group, 32 masked steps from tau 0.7, and the
reconstruction of the same pairs (tau 1), with `MaskedLM(compute_dtype=...)` "float32" (the model
itself) and "bfloat16" (a bfloat16 copy of its weights). Reported: seconds of the sweep and of the
reconstruction (median of --repeats after a warm-up), edits per second, the speed-up over float32,
whether every reconstruction is exact, and the share of sweep edits that bfloat16 changes. Needs
`models/text_mlm/` (`dvc repro train-text`). Results go to
benchmarks/results/bench_text_<machine>_<date>.json (or --json).

    python benchmarks/bench_text.py --pairs 24
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dicelib.text import editing as text_editing, sentiment_data
from timing import REPEATS, add_run_options, results_path, run_device, timed, write_results

SWEEP = [0.02, 0.05, 0.1, 0.2, 0.5, 0.8]  # params.yaml text_editing.sweep
LATENTS = ("onehot", "lai")  # params.yaml text_editing.pseudo_inverses


def edits_of(sweeps: dict[str, dict[str, list[str]]]) -> list[str]:
    """Return every edited sentence of `sweep_pairs` output, pseudo-inverse by pseudo-inverse, run by run."""
    return [e for runs in sweeps.values() for run, edits in runs.items() if run != "source" for e in edits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=24, help="val pairs (of 76)")
    parser.add_argument("--steps", type=int, default=32)
    add_run_options(parser, "bench_text")
    args = parser.parse_args()
    device = run_device(args)
    pairs = sentiment_data.load_pairs("val")[: args.pairs]
    kwargs = dict(steps=args.steps, seed=args.seed, progress=False)
    edits = len(LATENTS) * len(SWEEP) * len(pairs)  # per sweep
    rows, sweeps = [], {}
    for dtype in ("float32", "bfloat16"):
        lm = text_editing.load_masked_lm("text", device=device, compute_dtype=dtype)
        sweeps[dtype], sweep_s, sweep_runs = timed(lambda: text_editing.sweep_pairs(
            lm, pairs, list(LATENTS), SWEEP, tau=0.7, **kwargs), device, args.repeats)
        recon, recon_s, recon_runs = timed(lambda: text_editing.reconstruct_pairs(
            lm, pairs, LATENTS, **kwargs), device, args.repeats)
        exact = all(recon[f"dice_{pi}"] == recon["source"] for pi in LATENTS)
        rows.append(dict(compute_dtype=dtype, sweep_s=round(sweep_s, 3), sweep_runs=sweep_runs,
                         edits_per_s=round(edits / sweep_s, 2), reconstruction_s=round(recon_s, 3),
                         reconstruction_runs=recon_runs, reconstruction_exact=exact))
        print(f"{dtype:9} sweep {sweep_s:7.2f} s ({edits / sweep_s:5.1f} edits/s)  reconstruction {recon_s:6.2f} s  "
              f"exact {exact}", flush=True)
    full, bf16 = (edits_of(sweeps[d]) for d in ("float32", "bfloat16"))
    changed = sum(a != b for a, b in zip(full, bf16))
    base, half = rows
    half["sweep_speedup"] = round(base["sweep_s"] / half["sweep_s"], 2)
    half["reconstruction_speedup"] = round(base["reconstruction_s"] / half["reconstruction_s"], 2)
    half["sweep_edits_changed"] = round(changed / len(full), 4)
    meta = dict(device=str(device), torch=torch.__version__, threads=torch.get_num_threads(), pairs=len(pairs),
                steps=args.steps, sweep=SWEEP, pseudo_inverses=list(LATENTS), repeats=args.repeats,
                edits_per_sweep=edits)
    path = write_results(Path(args.json) if args.json else results_path("bench_text", device), meta, rows)
    print(f"bfloat16 over float32: sweep {half['sweep_speedup']}x, reconstruction {half['reconstruction_speedup']}x; "
          f"{100 * half['sweep_edits_changed']:.1f} % of the sweep's edits differ\n-> {path}")


if __name__ == "__main__":
    main()
