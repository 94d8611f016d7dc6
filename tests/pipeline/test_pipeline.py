"""The DVC wiring itself: a copy of the workspace reproduces a stage at teaching size and ends clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from dicelib.config import ROOT


@pytest.mark.slow
def test_dvc_repro_of_a_teaching_size_copy(tmp_path):
    work = tmp_path / "ws"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml", "notebooks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    shutil.copytree(ROOT / "dicelib", work / "dicelib", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["mutual_information"].update(mc_samples=20000, mc_timesteps="[1, 2, 5, 10, 50]",
                                        discrete_classes="[2, 3]", discrete_steps=10)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    env = os.environ | {"DICELIB_REPORTS": str(work / "reports")}
    run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run("dvc", "init", "--no-scm", "-q").returncode == 0
    out = run("dvc", "repro", "mutual-information")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    metrics = json.loads((work / "reports/metrics/mutual_information.json").read_text())
    assert metrics["mc_points"] == 5 and metrics["decreasing"]
    assert (work / "reports/figures/01-mutual-information.png").stat().st_size > 10_000
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert lock["stages"]["mutual-information"]["params"]["params.yaml"]["mutual_information"]["mc_samples"] == 20000
    status = run("dvc", "status", "mutual-information")
    assert status.returncode == 0 and "changed" not in status.stdout, status.stdout
