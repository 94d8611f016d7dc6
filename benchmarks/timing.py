"""Shared by the benchmarks: warm-up then the median of repeats, and result files named for machine and date.

A benchmark writes `benchmarks/results/<bench>_<machine>_<date>.json` unless given `--json`, so a run
never overwrites the reference results committed beside it (files without a date).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1]
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def machine(device: torch.device) -> str:
    """Return a file-name-safe name of the machine a device belongs to: the GPU's model, or the CPU's and its core count."""
    if device.type == "cuda":
        return _slug(torch.cuda.get_device_name(device))
    name = re.sub(r"\((r|tm)\)|\bcpu\b|@.*", "", _cpu_model(), flags=re.I)
    return f"{_slug(name)}-{os.cpu_count()}cpu"


def results_path(bench: str, device: torch.device, day: date | None = None) -> Path:
    """Return benchmarks/results/<bench>_<machine>_<YYYY-MM-DD>.json."""
    return RESULTS / f"{bench}_{machine(device)}_{(day or date.today()).isoformat()}.json"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> tuple[Any, float, list[float]]:
    """Return (the last fn() result, the median seconds, every repeat's seconds) after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times), times


def device_label(device: torch.device) -> str:
    """Return the device in words for a printed header: "cuda:0 (NVIDIA H100 ...)" or "cpu (x86_64)"."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return f"{device} ({name})"


def run_meta(device: torch.device, repeats: int, **extra: Any) -> dict:
    """Return the run facts every result file records (device, torch, threads, repeats, statistic) plus `extra`."""
    return {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "repeats": repeats, "warmup": 1, "statistic": "median", **extra}


def write_results(path: Path, meta: dict, rows: list[dict]) -> Path:
    """Return `path` after writing {"meta", "results"} atomically (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


REPEATS = 3  # timed runs after the warm-up; the median is reported


def add_run_options(p: Any, bench: str) -> None:
    """Add the options every adapter benchmark shares: --device, --threads, --seed, --repeats, --json."""
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=REPEATS, help="timed runs after the warm-up; the median is reported")
    p.add_argument("--json", default=None, help=f"default: benchmarks/results/{bench}_<machine>_<date>.json")


def run_device(a: Any) -> torch.device:
    """Apply --threads and return the device --device names (auto: CUDA when present, else the CPU)."""
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(a.device)
