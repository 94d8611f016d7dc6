"""dicelib.sweep: units, per-unit records, resume, failures, merge; the same bytes on `local` and on Ray.

The sweep is a tiny ShapesBench grid on the embedded `shapes` model (6 cases x 2 lambdas, one tau:
6 units). The Ray tests share one local cluster of 2 CPUs, started and stopped by a module fixture.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicelib.core.settings import EditSettings
from dicelib.errors import DiceError
from dicelib.image.shapes_sweep import ShapesSweep
from dicelib.sweep import Records, Unit, merge, run_sweep, unit_seed, units

SEED = 3
BASE = EditSettings(steps=8, cfg_scale=3.0, noise="mask", pseudo_inverse="lai")
OUTPUTS = ("metrics/shapes_sweep.json", "tables/shapes_sweep.csv", "tables/shapes_sweep.md",
           "tables/shapes_sweep_best.csv", "tables/shapes_sweep_best.md")
COMPUTED: Counter = Counter()  # units computed in this process, by case (local engine)


def task(reports: Path, cls: type = ShapesSweep, **kw) -> ShapesSweep:
    return cls(lambdas=(0.5, 0.9), taus=(0.8,), split="test", per_type=1, base=BASE, device="cpu",
               reports=str(reports), **kw)


def outputs(reports: Path) -> dict[str, bytes]:
    return {name: (reports / name).read_bytes() for name in OUTPUTS}


@dataclass(frozen=True)
class Counting(ShapesSweep):
    def run(self, state, case, points, seed):
        COMPUTED[case] += 1
        return super().run(state, case, points, seed)


@dataclass(frozen=True)
class Failing(ShapesSweep):
    bad: str = ""

    def run(self, state, case, points, seed):
        if case == self.bad:
            raise ValueError(f"cannot read case {case}")
        return super().run(state, case, points, seed)


@dataclass(frozen=True)
class Crashing(ShapesSweep):
    """Kills its worker process in the middle of `crash_case` the first time (a marker file remembers)."""

    crash_case: str = ""
    marker: str = ""

    def run(self, state, case, points, seed):
        if case == self.crash_case and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return super().run(state, case, points, seed)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Return (reports folder, outputs) of the whole sweep run on the local engine in one go."""
    reports = tmp_path_factory.mktemp("reference")
    ran = run_sweep(task(reports), SEED, reports / "records", progress=False)
    assert len(ran.computed) == ran.units == 6 and not ran.failed
    merge(task(reports), SEED, reports / "records")
    return reports, outputs(reports)


def test_units_group_the_settings_that_share_an_inversion(tmp_path):
    t = ShapesSweep(lambdas=(0.5, 0.7, 0.9), taus=(0.6, 0.8), per_type=1, base=BASE, reports=str(tmp_path))
    us = units(t)
    assert len(us) == 6 * 2 and len({u.case for u in us}) == 6
    grid = t.grid()
    for u in us:
        assert len(u.points) == 3 and len({grid[i]["tau"] for i in u.points}) == 1


def test_unit_seed_depends_on_the_sweep_seed_and_the_case_only():
    assert unit_seed(0, "a") == unit_seed(0, "a")
    assert len({unit_seed(0, "a"), unit_seed(1, "a"), unit_seed(0, "b")}) == 3
    assert 0 <= unit_seed(2**40, "x") < 2**62


def test_local_sweep_writes_one_record_per_unit_and_the_merged_outputs(reference):
    reports, out = reference
    records = sorted((reports / "records").glob("*.json"))
    assert len(records) == 6
    import json

    import io

    import pandas as pd

    best = pd.read_csv(io.BytesIO(out["tables/shapes_sweep_best.csv"])).iloc[0]
    assert best["cases"] == 6 and best["grid_points"] == 2 and best["failed_units"] == 0
    assert 0 < best["best_edit_score"] <= 1 and best["best_lambda1"] in (0.5, 0.9)
    metrics = json.loads(out["metrics/shapes_sweep.json"])
    assert metrics == {"preservation": best["best_preservation"], "edit_score": best["best_edit_score"]}
    assert b"overall" in out["tables/shapes_sweep.md"]
    # a rerun finds every unit done and computes nothing
    assert run_sweep(task(reports), SEED, reports / "records", progress=False).skipped == 6


def test_resume_after_the_driver_stops_computes_each_unit_once(tmp_path, reference):
    COMPUTED.clear()
    t = task(tmp_path, Counting)

    def stop_after_two(unit, record):
        if len(list((tmp_path / "records").glob("*.json"))) == 2:
            raise KeyboardInterrupt  # the driver dies after two units

    with pytest.raises(KeyboardInterrupt):
        run_sweep(t, SEED, tmp_path / "records", progress=False, on_record=stop_after_two)
    assert sum(COMPUTED.values()) == 2
    ran = run_sweep(t, SEED, tmp_path / "records", progress=False)
    assert ran.skipped == 2 and len(ran.computed) == 4
    assert sorted(COMPUTED.values()) == [1] * 6  # no unit computed twice
    merge(t, SEED, tmp_path / "records")
    assert outputs(tmp_path) == reference[1]


def test_a_failing_unit_is_recorded_with_its_message_and_the_sweep_goes_on(tmp_path, reference):
    cases = task(tmp_path).cases()
    t = task(tmp_path, Failing, bad=cases[1])
    ran = run_sweep(t, SEED, tmp_path / "records", progress=False)
    assert len(ran.computed) == 6 and [u.case for u, _ in ran.failed] == [cases[1]]
    assert ran.failed[0][1] == f"ValueError: cannot read case {cases[1]}"
    record = Records(t, SEED, tmp_path / "records").read(units(t)[1])
    assert record["status"] == "failed" and "cannot read case" in record["error"]
    import json

    assert merge(t, SEED, tmp_path / "records")["failed_units"] == 1
    assert (tmp_path / "tables/shapes_sweep_best.csv").read_text().splitlines()[1].startswith("5,")  # cases
    # a rerun tries the failed unit again (and only it); once it succeeds the outputs are the full ones
    fixed = task(tmp_path, Failing, bad="none")
    ran = run_sweep(fixed, SEED, tmp_path / "records", progress=False)
    assert [u.case for u in ran.computed] == [cases[1]] and ran.skipped == 5
    merge(fixed, SEED, tmp_path / "records")
    assert outputs(tmp_path) == reference[1]


def test_records_of_another_model_or_seed_are_not_reused(tmp_path, reference):
    reports, _ = reference
    unit = units(task(reports))[0]
    same = Records(task(reports), SEED, reports / "records")
    assert same.done(unit)
    assert not Records(task(reports), SEED + 1, reports / "records").done(unit)
    other = tmp_path / "shapes-copy.pt"
    other.write_bytes(Path(task(reports).checkpoint).read_bytes() + b"\0")
    assert not Records(task(reports, checkpoint=str(other)), SEED, reports / "records").done(unit)


def test_merge_without_records_names_the_missing_units(tmp_path):
    with pytest.raises(DiceError, match="6 unit\\(s\\) of shapes_sweep have no record"):
        merge(task(tmp_path), SEED, tmp_path / "records")


@pytest.mark.parametrize("kwargs, message", [
    (dict(engine="spark"), "unknown engine 'spark'"),
    (dict(workers=0), "workers = 0 is not allowed"),
    (dict(max_retries=-1), "max_retries = -1 is not allowed"),
])
def test_bad_engine_options_name_the_value(tmp_path, kwargs, message):
    with pytest.raises(DiceError, match=message):
        run_sweep(task(tmp_path), SEED, tmp_path / "records", progress=False, **kwargs)


def test_engine_ray_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(DiceError, match=r"pip install 'dicelib\[cluster\]'"):
        run_sweep(task(tmp_path), SEED, tmp_path / "records", engine="ray", progress=False)


def test_bad_task_values_are_refused(tmp_path):
    with pytest.raises(DiceError, match="taus = \\[0.0\\] is not allowed"):
        ShapesSweep(taus=(0.0,))
    with pytest.raises(DiceError, match="split"):
        ShapesSweep(split="dev")
    assert Unit("c", (0, 2)).key() == "c@0,2"


# --- Ray: one local cluster of 2 workers for the module ------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test tasks travel to the workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_with_two_workers_writes_the_same_bytes_as_local(tmp_path, reference, cluster):
    ran = run_sweep(task(tmp_path), SEED, tmp_path / "records", engine="ray", workers=2, progress=False)
    assert len(ran.computed) == 6 and not ran.failed
    merge(task(tmp_path), SEED, tmp_path / "records")
    assert outputs(tmp_path) == reference[1]


@pytest.mark.slow
def test_a_sweep_stopped_locally_resumes_on_ray_and_survives_a_killed_worker(tmp_path, reference, cluster):
    """The driver stops after 3 units; the rerun on Ray computes only the other 3, and the worker that dies
    in the middle of one of them (os._exit on the first attempt) is restarted and the unit retried."""
    cases = task(tmp_path).cases()
    marker = tmp_path / "crashed"
    t = task(tmp_path, Crashing, crash_case=cases[4], marker=str(marker))

    def stop_after_three(unit, record):
        if len(list((tmp_path / "records").glob("*.json"))) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(t, SEED, tmp_path / "records", progress=False, on_record=stop_after_three)
    ran = run_sweep(t, SEED, tmp_path / "records", engine="ray", workers=2, max_retries=2, progress=False)
    assert marker.exists(), "the worker never crashed"
    assert ran.skipped == 3 and sorted(u.case for u in ran.computed) == sorted(cases[3:]) and not ran.failed
    merge(t, SEED, tmp_path / "records")
    assert outputs(tmp_path) == reference[1]
