"""`dvc repro` of each Python stage with one bad param, in a copy of the workspace: it stops before any
work with one `Error:` line naming the key, and every output of every stage and dvc.lock stay byte for byte.

Notebook stages run the same contract through `python -m dicelib.io notebook`; a kernel start per
stage is slow on a small machine, so `dvc repro` of a broken notebook stage is run for one of them
(test_pipeline.py), and every notebook's bad value is checked in test_params.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import yaml

from dicelib.config import ROOT

from .stages import NOTEBOOK_STAGES, STAGES, outputs

BROKEN = {  # stage: (params group, key, bad value, what the error line says)
    "mutual-information": ("mutual_information", "mc_samples", "lots", "parameter mc_samples = 'lots'"),
    "data": ("shapes_data", "test_per_type", 90, "test_per_type = 90 are not allowed together"),
    "train-shapes": ("train_shapes", "steps", -1, "parameter steps = -1 is not allowed"),
    "walkthrough": ("walkthrough", "tau", 5.0, "parameter tau = 5.0 is not allowed"),
    "explore": ("explore", "recon_index", -1, "parameter recon_index = -1 is not allowed"),
    "reconstruction": ("reconstruction", "steps", 0, "parameter steps = 0 is not allowed"),
    "editing-ablations": ("editing", "steps", 0, "parameter steps = 0 is not allowed"),
    "lambda-schedules": ("lambda_schedules", "steps", 0, "parameter steps = 0 is not allowed"),
    "next-scale": ("next_scale", "eval_per_type", 0, "parameter eval_per_type = 0 is not allowed"),
    "shapes-sweep": ("shapes_sweep", "lambdas", "[0.5, 1.5]", "lambdas = [0.5, 1.5] is not allowed"),
    "text-data": ("text_data", "test_fraction", 1.5, "parameter test_fraction = 1.5 is not allowed"),
    "train-text": ("text_model", "steps", -5, "parameter steps = -5 is not allowed"),
    "train-text-baseline": ("text_baseline", "steps", 0, "parameter steps = 0 is not allowed"),
    "text-editing": ("text_editing", "steps", 0, "parameter steps = 0 is not allowed"),
}


UNPARAMETERISED = ("report",)  # reads every stage's outputs and no params of its own: nothing to break


def test_every_stage_is_broken_below():
    assert sorted(BROKEN) == sorted(s for s in STAGES if s not in UNPARAMETERISED)


@pytest.mark.slow
def test_a_bad_param_in_any_stage_leaves_every_output_and_dvc_lock(tmp_path):
    work = tmp_path / "ws"
    work.mkdir()
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", "notebooks", "dicelib", "data", "models", "reports"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    env = os.environ | {"DICELIB_REPORTS": str(work / "reports"), "PYTHONPATH": str(work)}
    run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)  # noqa: E731
    assert run("dvc", "init", "--no-scm", "-q").returncode == 0
    files = lambda: {p: p.read_bytes() for p in [work / "dvc.lock"] + [  # noqa: E731
        f for s in STAGES for o in outputs(s) for f in ([work / o] if (work / o).is_file() else (work / o).rglob("*"))
        if f.is_file()]}
    before = files()
    good = yaml.safe_load((work / "params.yaml").read_text())
    for stage, (group, key, bad, message) in BROKEN.items():
        if stage in NOTEBOOK_STAGES:
            continue
        params = yaml.safe_load((work / "params.yaml").read_text())
        params[group][key] = bad
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        start = time.perf_counter()
        out = run("dvc", "repro", "--single-item", stage)
        print(f"{stage}: {time.perf_counter() - start:.1f} s")
        log = out.stdout + out.stderr
        assert out.returncode != 0 and message in log, f"{stage}: {log[-2000:]}"
        assert f"Error: {group}" in log and "Traceback" not in log, f"{stage}: {log[-2000:]}"
        (work / "params.yaml").write_text(yaml.safe_dump(good))
        now = files()
        changed = sorted(str(p.relative_to(work)) for p in before if now.get(p) != before[p])
        assert changed == [] and set(now) == set(before), f"{stage} changed {changed}"
