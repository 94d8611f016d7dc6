"""The benchmarks' shared timing: warm-up, the median of repeats, and result files named for machine and date."""

from __future__ import annotations

import json
import sys
from datetime import date

import torch

from dicelib.config import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import timing  # noqa: E402


def test_results_are_named_for_machine_and_date_never_a_committed_reference():
    path = timing.results_path("bench_adapters", torch.device("cpu"), date(2026, 12, 2))
    assert path.parent == ROOT / "benchmarks" / "results"
    assert path.name.startswith("bench_adapters_") and path.name.endswith("cpu_2026-12-02.json")
    machine = timing.machine(torch.device("cpu"))
    assert machine and machine == machine.lower() and "/" not in machine and " " not in machine
    committed = {p.name for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    assert "bench_adapters.json" in committed and path.name != "bench_adapters.json"


def test_timed_warms_up_then_reports_the_median_of_repeats(monkeypatch, tmp_path):
    calls, clock = [], iter([0.0, 5.0, 10.0, 11.0, 20.0, 22.0])  # repeats of 5 s, 1 s, 2 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    out, median, times = timing.timed(lambda: calls.append(1) or len(calls), torch.device("cpu"), repeats=3, warmup=1)
    assert len(calls) == 4 and out == 4  # one untimed warm-up, three timed runs
    assert times == [5.0, 1.0, 2.0] and median == 2.0
    written = timing.write_results(tmp_path / "r.json", {"repeats": 3}, [{"s": median}])
    assert json.loads(written.read_text()) == {"meta": {"repeats": 3}, "results": [{"s": 2.0}]}


def test_text_benchmark_runs_both_dtypes_and_reconstructs(tmp_path, monkeypatch):
    """benchmarks/bench_text.py at a tiny size: float32 and bfloat16 rows, exact reconstructions, a speed-up and
    the share of edits bfloat16 changes."""
    import bench_text

    out = tmp_path / "text.json"
    monkeypatch.setattr(sys, "argv", ["bench_text.py", "--pairs", "3", "--steps", "2", "--repeats", "1",
                                      "--threads", str(torch.get_num_threads()), "--json", str(out)])
    bench_text.main()
    rows = json.loads(out.read_text())["results"]
    assert [r["compute_dtype"] for r in rows] == ["float32", "bfloat16"]
    assert all(r["reconstruction_exact"] and r["sweep_s"] > 0 for r in rows)
    assert rows[1]["sweep_speedup"] > 0 and 0 <= rows[1]["sweep_edits_changed"] <= 1
