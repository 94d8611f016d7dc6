"""The image track writes the same bytes under every instruction set this CPU can emulate (docs/reproducibility.md).

Each run is a subprocess (torch reads ATEN_CPU_CAPABILITY, MKL reads MKL_CBWR and oneDNN reads
ONEDNN_MAX_CPU_ISA when they load) editing ShapesBench cases as notebook 03 does, at a small size:
the oracle's DICE edits (its settings on the pipeline) and a tiny untrained `shapes` model's
(guided, LAI latents, max injection). The outputs are token ids: compared byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from dicelib import kernels
from dicelib.config import ROOT
from dicelib.errors import DiceError

# prints {"oracle": sha256 of the oracle's edits, "learned": ..., "capability": ATen's kernels in use}
SCRIPT = """
import hashlib, json, sys
from dataclasses import replace
import numpy as np, torch
from dicelib import EditSettings, kernels
if sys.argv[1:] == ["pin"]:
    kernels.pin_process()
from dicelib.image import benchmark_build, editing, shapes_model
from dicelib.image.shapes_oracle import ShapesOracle
cases, grids = benchmark_build.build_cases(cases_per_type=1, seed=5, val_per_type=0, test_per_type=1)
oracle = editing.EditRunner(ShapesOracle(), cases, grids, seed=0)
s = EditSettings(steps=8, tau=0.8, noise="mask", pseudo_inverse="onehot", lambda1=0.9, injection="add")
out = {"oracle": np.stack(oracle.edit_many([replace(s, lambda1=v) for v in (0.5, 0.9)]))}
torch.manual_seed(0)
model = shapes_model.ShapesDenoiser(shapes_model.ShapesConfig(dim=32, depth=1, heads=2, pixel_dim=8, num_steps=4)).eval()
learned = editing.EditRunner(model, cases, grids, seed=0)
with torch.no_grad():
    out["learned"] = learned.edit(replace(s, tau=1.0, cfg_scale=3.0, pseudo_inverse="lai", lambda1=0.5, injection="max"))
report = {k: hashlib.sha256(np.ascontiguousarray(v, dtype=np.int64).tobytes()).hexdigest() for k, v in out.items()}
report["capability"] = torch.backends.cpu.get_cpu_capability()
print(json.dumps(report))
"""
VARIABLES = (*kernels.PINNED, kernels.SWITCH, "MKL_ENABLE_INSTRUCTIONS")


def run(*args: str, **env: str) -> dict[str, str]:
    """Return the script's report from a subprocess under this environment plus `env` (pins removed first)."""
    base = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], env={**base, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_avx2 = pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                                reason="the pinned kernels need an AVX2 CPU")


def test_oracle_edits_are_the_same_bytes_under_every_instruction_set_and_thread_count():
    # no pin: the oracle's numerics alone (exact sums on a grid, no cancellation) make its edits CPU-independent
    native = run(OMP_NUM_THREADS="1")
    scalar = run(OMP_NUM_THREADS="1", ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE")
    avx2 = run(OMP_NUM_THREADS="2", ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    assert scalar["capability"] == "DEFAULT" and native["capability"] != "DEFAULT"  # the settings took effect
    assert native["oracle"] == scalar["oracle"] == avx2["oracle"]


@needs_avx2
def test_pinned_stage_processes_run_avx2_kernels_and_write_the_same_bytes_whatever_the_user_set():
    # a stage entry point calls kernels.pin_process() first: it re-executes under PINNED over the user's settings
    plain = run("pin")
    overridden = run("pin", ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE", ONEDNN_MAX_CPU_ISA="SSE41",
                     OMP_NUM_THREADS="1")
    assert plain["capability"] == overridden["capability"] == "AVX2"
    assert plain == overridden


def test_pinned_env_sets_every_pin_and_notebooks_get_theirs():
    env = kernels.pinned_env({"ATEN_CPU_CAPABILITY": "default", "PATH": "/bin"})
    assert env["PATH"] == "/bin" and all(env[k] == v for k, v in kernels.PINNED.items())
    assert kernels.pinned_env({kernels.SWITCH: "native"}) == {kernels.SWITCH: "native"}  # the opt-out
    assert kernels.is_pinned({kernels.SWITCH: "native"}) and not kernels.is_pinned({"ATEN_CPU_CAPABILITY": "avx2"})
    assert kernels.is_pinned(dict(kernels.PINNED)) and kernels.is_pinned(dict(kernels.BFLOAT16), kernels.BFLOAT16)
    assert kernels.notebook_pins("notebooks/03-editing-ablations.ipynb") == kernels.PINNED
    assert kernels.notebook_pins("notebooks/05-text-editing.ipynb") == kernels.BFLOAT16
    with pytest.raises(DiceError, match="DICELIB_KERNELS='fast'; expected one of pinned, native"):
        kernels.mode({kernels.SWITCH: "fast"})

