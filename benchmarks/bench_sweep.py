"""Benchmark `dicelib.sweep` engines on a ShapesBench grid: units per second locally and on a local Ray cluster.

Runs the same sweep (the `shapes` model, --per-type cases of each edit type x --lambdas x --taus;
one unit = one case at one tau, its lambdas as one edit grid) with the local engine and with Ray at
1 and 2 workers (1 torch thread each), each into a fresh record folder, and reports per engine the
units per second (the units' part only, start-up excluded), the start-up (cluster start + model
loads), and Ray's overhead per unit: its wall time per unit with one worker minus the units' own
compute time. It checks that every engine's merged metrics are byte for byte those of the local run.

    PYTHONPATH=. python benchmarks/bench_sweep.py --json benchmarks/results/bench_sweep_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from dicelib.core.settings import EditSettings
from dicelib.image.shapes_sweep import ShapesSweep
from dicelib.sweep import merge, run_sweep


def one(engine: str, workers: int | None, args: argparse.Namespace) -> dict:
    reports = Path(tempfile.mkdtemp(prefix=f"bench-sweep-{engine}-"))
    task = ShapesSweep(lambdas=tuple(args.lambdas), taus=tuple(args.taus), split="test", per_type=args.per_type,
                       base=EditSettings(steps=args.steps, cfg_scale=3.0, noise="mask", pseudo_inverse="lai"),
                       device="cpu", reports=str(reports))
    start = time.perf_counter()
    if engine == "ray":
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    ran = run_sweep(task, 0, reports / "records", engine=engine, workers=workers, threads=1, progress=False)
    total = time.perf_counter() - start
    merge(task, 0, reports / "records")
    if engine == "ray":
        ray.shutdown()
    n = len(ran.computed)
    return {"engine": engine, "workers": workers or 1, "units": n, "seconds_units": round(ran.seconds, 2),
            "seconds_total": round(total, 2), "startup_s": round(total - ran.seconds, 2),
            "units_per_s": round(n / ran.seconds, 3), "compute_s_per_unit": round(ran.compute_seconds / n, 4),
            "metrics": (reports / "metrics" / "shapes_sweep.json").read_text()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-type", type=int, default=4)
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    p.add_argument("--taus", type=float, nargs="+", default=[0.6, 0.8])
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    runs = [one("local", None, args), one("ray", 1, args), one("ray", 2, args)]
    identical = all(r["metrics"] == runs[0]["metrics"] for r in runs)
    one_worker = runs[1]
    overhead = one_worker["seconds_units"] / one_worker["units"] - one_worker["compute_s_per_unit"]
    for r in runs:
        r.pop("metrics")
        print(f"{r['engine']:5s} workers={r['workers']}: {r['units']} units, {r['units_per_s']:.2f} units/s "
              f"(compute {r['compute_s_per_unit']:.3f} s/unit), start-up {r['startup_s']:.1f} s")
    print(f"Ray overhead per unit (1 worker): {overhead * 1000:.0f} ms; merged metrics identical: {identical}")
    if args.json:
        result = {"cpu_count": os.cpu_count(), "load_average_after": os.getloadavg(), "grid": vars(args) | {"json": None},
                  "runs": runs, "ray_overhead_s_per_unit": round(overhead, 4), "identical_metrics": identical}
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
