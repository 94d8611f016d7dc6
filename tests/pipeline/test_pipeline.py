"""The DVC wiring itself: a copy of the workspace reproduces a stage at teaching size and ends clean,
and a failed rerun leaves every output of the last successful run as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import pandas as pd
import yaml

from dicelib.config import ROOT

from .stages import outputs

STAGE = "mutual-information"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Return (copy of the workspace, run(*cmd) there, the result of `dvc repro mutual-information` at teaching size)."""
    work = tmp_path_factory.mktemp("pipeline") / "ws"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml", "notebooks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    shutil.copytree(ROOT / "dicelib", work / "dicelib", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["mutual_information"].update(mc_samples=20000, mc_timesteps="[1, 2, 5, 10, 50]",
                                        discrete_classes="[2, 3]", discrete_steps=10)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    env = os.environ | {"DICELIB_REPORTS": str(work / "reports"), "PYTHONPATH": str(work)}  # the kernel imports the copy
    run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run("dvc", "init", "--no-scm", "-q").returncode == 0
    return work, run, run("dvc", "repro", STAGE)


@pytest.mark.slow
def test_dvc_repro_of_a_teaching_size_copy(workspace):
    work, run, out = workspace
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = pd.read_csv(work / "reports/tables/mutual_information.csv")
    assert abs(table.set_index("t").loc[1, "mi_closed_form"] - 5.00025e-5) < 1e-9  # the paper's Fig. 3 number
    assert (work / "reports/figures/01-mutual-information.png").stat().st_size > 10_000
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert lock["stages"][STAGE]["params"]["params.yaml"]["mutual_information"]["mc_samples"] == 20000
    status = run("dvc", "status", STAGE)
    assert status.returncode == 0 and "changed" not in status.stdout, status.stdout
    assert not (work / "reports/.staging").exists() and not (work / "reports/notebooks/failed").exists()


@pytest.mark.slow
def test_a_failed_rerun_leaves_every_previous_output_byte_for_byte(workspace):
    work, run, first = workspace
    assert first.returncode == 0, first.stderr[-3000:]
    before = {path: (work / path).read_bytes() for path in [*outputs(STAGE), "dvc.lock"]}
    good = (work / "params.yaml").read_text()
    try:
        (work / "params.yaml").write_text(good.replace("mc_samples: 20000", "mc_samples: lots"))
        out = run("dvc", "repro", STAGE)
        log = out.stdout + out.stderr
        assert out.returncode != 0, log[-3000:]
        message = "DiceError: mutual_information: parameter mc_samples = 'lots' is not allowed; expected an int >= 2"
        assert message in log, log[-3000:]
        assert {path: (work / path).read_bytes() for path in before} == before
        failed = json.loads((work / "reports/notebooks/failed/01-mutual-information.ipynb").read_text())
        banner = "".join(failed["cells"][0]["source"])
        assert banner.startswith("# This run FAILED") and message in banner, banner
        assert not (work / "reports/.staging").exists()
    finally:
        (work / "params.yaml").write_text(good)


@pytest.mark.slow
def test_a_forced_rerun_writes_the_same_bytes(workspace):
    """No timestamps, random cell ids, progress bars or absolute paths in any output: a rerun is a no-op for git."""
    work, run, first = workspace
    assert first.returncode == 0, first.stderr[-3000:]
    before = {path: (work / path).read_bytes() for path in [*outputs(STAGE), "dvc.lock"]}
    out = run("dvc", "repro", "-f", STAGE)
    assert out.returncode == 0, out.stderr[-3000:]
    changed = [path for path, data in before.items() if (work / path).read_bytes() != data]
    assert changed == []
    executed = (work / "reports/notebooks/01-mutual-information.ipynb").read_text()
    assert str(work) not in executed and "start_time" not in executed and '"stderr"' not in executed
