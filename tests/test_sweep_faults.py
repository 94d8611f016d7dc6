"""dicelib.sweep under faults: an unreachable cluster, corrupt records, no cases, two runs in one folder, NaN scores.

A toy task (no model) keeps these tests to a fraction of a second each.
"""

from __future__ import annotations

import fcntl
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dicelib.config import ROOT
from dicelib.errors import DiceError
from dicelib.sweep import LOCK, Records, merge, run_sweep, units


@dataclass
class Toy:
    """Cases c0..c(n-1), one grid point; each unit's row scores 0.5 (or `nan_case`: NaN)."""

    n: int = 3
    nan_case: str = ""
    name: str = "toy"
    scores: tuple[str, ...] = ("edit_score",)
    ran: list = field(default_factory=list)

    def cases(self):
        return [f"c{i}" for i in range(self.n)]

    def grid(self):
        return [{"lambda1": 0.5}]

    def inversion_key(self, point):
        return 0

    def fingerprint(self):
        return {}

    def setup(self):
        return None

    def run(self, state, case, points, seed):
        self.ran.append(case)
        return [{"id": case, "edit_score": math.nan if case == self.nan_case else 0.5}]

    def merge(self, rows, failed, meta):
        return {"rows": len(rows), "failed": [f["case"] for f in failed]}


def test_an_unreachable_ray_address_is_one_error_line_within_seconds(tmp_path):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dicelib.image.shapes_sweep", "--engine", "ray", "--address",
                          "127.0.0.1:1", "--reports", str(tmp_path)], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    lines = [line for line in out.stderr.strip().splitlines() if "units (ray)" not in line]  # its progress bar
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert lines[0].startswith("Error: cannot reach the Ray cluster at address '127.0.0.1:1' within 10 s")
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("corrupt", [None, [1, 2], {"unit": "x"}, "no status", "string score"])
def test_a_corrupt_record_is_computed_again_with_a_warning_naming_its_file(tmp_path, corrupt):
    task = Toy()
    run_sweep(task, 0, tmp_path, progress=False)
    store, unit = Records(task, 0, tmp_path), units(task)[1]
    record = json.loads(store.path(unit).read_text())
    if corrupt == "no status":
        corrupt = {k: v for k, v in record.items() if k != "status"}
    elif corrupt == "string score":
        corrupt = {**record, "rows": [{"id": "c1", "edit_score": "0.9"}]}
    store.path(unit).write_text(json.dumps(corrupt))
    task.ran.clear()
    with pytest.warns(UserWarning, match=f"sweep record {store.path(unit)} is not valid"):
        ran = run_sweep(task, 0, tmp_path, progress=False)
    assert task.ran == ["c1"] and ran.skipped == 2
    assert merge(task, 0, tmp_path) == {"rows": 3, "failed": []}


def test_a_nan_score_fails_its_unit_instead_of_moving_the_merged_best_point(tmp_path):
    task = Toy(nan_case="c2")
    ran = run_sweep(task, 0, tmp_path, progress=False)
    assert [u.case for u, _ in ran.failed] == ["c2"] and "edit_score = nan is not a finite number" in ran.failed[0][1]
    assert merge(task, 0, tmp_path) == {"rows": 2, "failed": ["c2"]}


def test_a_sweep_without_cases_fails_and_writes_nothing(tmp_path):
    with pytest.raises(DiceError, match="toy has no work: 0 case\\(s\\) x 1 grid point\\(s\\)"):
        run_sweep(Toy(n=0), 0, tmp_path / "records", progress=False)
    with pytest.raises(DiceError, match="has no work"):
        merge(Toy(n=0), 0, tmp_path / "records")
    assert not (tmp_path / "records").exists()


def test_two_runs_cannot_share_one_records_folder(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / LOCK, "a+") as held:  # a run in progress elsewhere holds the lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on elsewhere")
        held.flush()
        task = Toy()
        with pytest.raises(DiceError, match="another sweep \\(pid 4242 on elsewhere\\) is running in"):
            run_sweep(task, 0, tmp_path, progress=False)
        assert task.ran == []
    assert len(run_sweep(task, 0, tmp_path, progress=False).computed) == 3  # released: the next run goes ahead


@pytest.mark.parametrize("threads", [0, -2, True])
def test_bad_thread_counts_are_refused(tmp_path, threads):
    with pytest.raises(DiceError, match=f"threads = {threads!r} is not allowed"):
        run_sweep(Toy(), 0, tmp_path, threads=threads, progress=False)


def test_a_records_folder_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DiceError, match="cannot be a folder: .* is a file"):
        run_sweep(Toy(), 0, tmp_path / "file" / "x", progress=False)


def test_an_empty_piebench_mapping_fails_and_keeps_the_previous_metrics(tmp_path):
    from dicelib.piebench.experiment import main

    data, out = tmp_path / "data", tmp_path / "res"
    (data / "annotation_images").mkdir(parents=True)
    (data / "mapping_file.json").write_text("{}")
    out.mkdir()
    (out / "metrics.json").write_text('{"cases": 12}\n')
    with pytest.raises(DiceError, match="piebench has no work: 0 case"):
        main(["--data", str(data), "--out", str(out), "--model", "random-amused"])
    assert [p.name for p in out.iterdir()] == ["metrics.json"] and (out / "metrics.json").read_text() == '{"cases": 12}\n'
