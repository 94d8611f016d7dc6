"""`python -m dicelib.io notebook` publishes a notebook's outputs only when every cell succeeded.

A tiny notebook saves a metric and then checks its parameter (or sleeps until it is interrupted):
after a failure, Ctrl-C or kill, the outputs of the last successful run are there byte for byte and
the failed run's executed notebook says why it failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from dicelib.config import ROOT
from dicelib.io import FAILED, STAGING

pytestmark = pytest.mark.slow  # each test starts a kernel


def _as_from_a_terminal() -> None:
    """Give the child the signal state a command started from a shell has: SIGINT and SIGTERM at their defaults and
    not blocked (an ignored or blocked signal is inherited through exec, and pytest's process may hold one)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Return (folder, run(value, sleep) -> Popen, the bytes of every output) after one successful run."""
    work = tmp_path_factory.mktemp("runner")
    params = nbformat.v4.new_code_cell("value = 1\nsleep = 0")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[
        params,
        nbformat.v4.new_code_cell("import time\nfrom dicelib.io import save_metrics\nsave_metrics({'value': value}, 'tiny')"),
        nbformat.v4.new_code_cell("time.sleep(sleep)\nassert value < 5, f'value {value} is too large'"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, work / "tiny.ipynb")
    env = os.environ | {"DICELIB_REPORTS": str(work / "reports"), "PYTHONPATH": str(ROOT)}

    def run(value: int, sleep: int = 0) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "dicelib.io", "notebook", "tiny.ipynb", "out/tiny.ipynb", "-k", "python3",
               "-p", "value", str(value), "-p", "sleep", str(sleep)]
        return subprocess.Popen(cmd, cwd=work, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=_as_from_a_terminal)

    first = run(1)
    assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
    files = sorted(p for p in work.rglob("*") if p.is_file() and p != work / "tiny.ipynb")
    assert [str(p.relative_to(work)) for p in files] == ["out/tiny.ipynb", "reports/metrics/tiny.json"]
    executed = json.loads((work / "out/tiny.ipynb").read_text())
    assert executed["metadata"]["papermill"]["output_path"] == "out/tiny.ipynb"  # as papermill records it
    assert json.loads((work / "reports/metrics/tiny.json").read_text()) == {"value": 1}
    return work, run, {p: p.read_bytes() for p in files}


def _assert_failed(work, before, reason: str) -> None:
    assert {p: p.read_bytes() for p in before} == before, "a failed run changed a published output"
    failed = json.loads((work / "out" / FAILED / "tiny.ipynb").read_text())
    banner = "".join(failed["cells"][0]["source"])
    assert banner.startswith("# This run FAILED") and reason in banner, banner
    assert failed["metadata"]["papermill"]["exception"] is True
    assert not (work / "reports" / STAGING).exists()


def test_a_failing_cell_publishes_nothing_though_an_earlier_cell_saved_an_output(published):
    work, run, before = published
    p = run(9)
    assert p.wait(timeout=300) == 1
    stderr = p.stderr.read()
    assert "tiny.ipynb FAILED: AssertionError: value 9 is too large" in stderr, stderr[-3000:]
    _assert_failed(work, before, "AssertionError: value 9 is too large")


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_an_interrupted_run_publishes_nothing_and_says_so(published, how):
    work, run, before = published
    staged = work / "reports" / STAGING / "tiny" / "reports" / "metrics" / "tiny.json"
    started = time.time() - 1  # a staged file from an earlier run in this folder must not count (mtime granularity)
    p = run(2, sleep=120)

    def reached() -> bool:  # this run's kernel wrote its metrics and sits in the sleeping cell
        try:
            return staged.stat().st_mtime >= started
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 120
    while not reached() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reached(), "the run never reached its sleeping cell"
    if how == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)  # what a terminal sends to the whole foreground group
    else:
        p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 130
    reason = "KeyboardInterrupt: " + ("interrupted (Ctrl-C)" if how == "ctrl-c" else "stopped by SIGTERM")
    assert reason in p.stderr.read()
    _assert_failed(work, before, reason)


def test_a_successful_run_is_quiet_streams_its_bars_and_prints_its_headline(tmp_path):
    params = nbformat.v4.new_code_cell("n = 3")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[
        params,
        nbformat.v4.new_code_cell("import dicelib\nfrom dicelib.analysis import mi_report\nfrom dicelib.image import editing\n"
                                  "from dicelib.io import save_metrics\nfrom tqdm import tqdm"),
        nbformat.v4.new_code_cell("for _ in tqdm(range(n), desc='a long loop'):\n    pass\n"
                                  "save_metrics({'score': 0.25, 'kind': 'best'}, 'quiet')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, tmp_path / "quiet.ipynb")
    env = os.environ | {"DICELIB_REPORTS": str(tmp_path / "reports"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "dicelib.io", "notebook", "quiet.ipynb", "out/quiet.ipynb", "-k", "python3"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("metrics/quiet.json: kind best, score 0.25"), out.stdout  # the headline numbers
    assert "a long loop: 100%" in out.stderr, out.stderr  # the kernel's bar, live on the stage's stderr
    for noise in ("TCP", "KeyboardInterrupt", "Warning", "Traceback", "deprecated"):
        assert noise not in out.stderr, out.stderr
    executed = nbformat.read(tmp_path / "out/quiet.ipynb", as_version=4)
    assert not [o for c in executed.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]  # bars kept out
