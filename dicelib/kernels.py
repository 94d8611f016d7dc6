"""Return the environment that pins the pipeline's CPU kernels to one instruction set (docs/reproducibility.md).

PyTorch, MKL and oneDNN each choose their kernels for the CPU they run on (AVX-512 here, AVX2
there, another vendor's branch elsewhere), and kernels of different widths sum in different
orders: the same stage then writes different bytes on different machines once a last-bit
difference flips a sampled token. Every image-track stage therefore runs with PINNED: ATen's
AVX2 kernels, MKL's AVX2 branch, oneDNN capped at AVX2 (AVX2 runs on every x86-64 CPU of the
last decade: Intel since 2013, AMD since 2015) and two threads (the thread count splits
reductions); the bfloat16 text stages pin ATen's kernels and the threads only (BFLOAT16).

The variables are read when torch loads, so they are set where a stage starts: `run_notebook`
gives them to the notebook kernel, and the stage entry points call `pin_process` first, which
re-executes the process under them. Tests, the CLI and library calls keep the native kernels.
`DICELIB_KERNELS=native` runs a stage with the native kernels (faster on some machines; not
byte-identical across machines).
"""

from __future__ import annotations

import os
import sys

from .errors import DiceError

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's vectorised kernels (softmax, exp, log, reductions)
    "MKL_CBWR": "AVX2",  # MKL's AVX2 branch (Intel CPUs; others run MKL's own branch: docs/reproducibility.md)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's convolutions and matmuls
    "OMP_NUM_THREADS": "2",  # threads split reductions: a fixed count (stages with a `threads` parameter set their own)
}
# bfloat16 stages (text track): oneDNN capped at AVX2 runs their forward pass 2.5x slower and MKL's
# branches cost float32 parts up to 4x, so they pin torch's kernels and the threads only
BFLOAT16 = {k: PINNED[k] for k in ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")}
BFLOAT16_NOTEBOOKS = ("05-text-editing.ipynb",)  # notebooks run under BFLOAT16
SWITCH = "DICELIB_KERNELS"  # pinned (default) | native
MODES = ("pinned", "native")


def mode(env: dict[str, str] | None = None) -> str:
    """Return the kernel mode `env` (default os.environ) asks for: "pinned" unless DICELIB_KERNELS=native."""
    value = (os.environ if env is None else env).get(SWITCH, "pinned")
    if value not in MODES:
        raise DiceError(f"{SWITCH}={value!r}; expected one of {', '.join(MODES)}")
    return value


def pinned_env(env: dict[str, str] | None = None, pins: dict[str, str] = PINNED) -> dict[str, str]:
    """Return a copy of `env` (default os.environ) with `pins` set over it (unchanged when DICELIB_KERNELS=native)."""
    env = dict(os.environ if env is None else env)
    return env if mode(env) == "native" else {**env, **pins}


def notebook_pins(notebook: str | os.PathLike) -> dict[str, str]:
    """Return the pins a notebook stage runs under: BFLOAT16 for BFLOAT16_NOTEBOOKS, else PINNED."""
    return BFLOAT16 if os.path.basename(notebook) in BFLOAT16_NOTEBOOKS else PINNED


def is_pinned(env: dict[str, str] | None = None, pins: dict[str, str] = PINNED) -> bool:
    """Return whether `env` (default os.environ) already holds every value of `pins` (or asks for native kernels)."""
    env = os.environ if env is None else env
    return mode(env) == "native" or all(env.get(k) == v for k, v in pins.items())


def pin_process(pins: dict[str, str] = PINNED) -> None:
    """Return only in a process whose environment holds `pins`: otherwise re-execute this command line under
    `pinned_env(pins=pins)` (the variables act when torch loads, so the process starts over: same pid, same
    arguments, nothing run twice as long as it is the first call of a stage's entry point)."""
    if is_pinned(pins=pins):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], pinned_env(pins=pins))
