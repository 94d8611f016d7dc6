"""Notebook 07 in JupyterLab, driven by headless Chromium: run it, move lambda1, and see the edit change within 1 s.

Starts JupyterLab on a free loopback port over a copy of the notebook (outputs never land in the
repository), opens it in Debian's Chromium through Playwright, runs every cell, types a new lambda1
into the slider's readout as a user would and then drags its handle, and times each from the key press
or the drag to the moment the shown edit image changes (the inversion is cached: one edit). Skipped where Chromium or Playwright is missing.
Set DICELIB_EXPLORE_SCREENSHOT=path to keep a screenshot of the explorer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dicelib.config import ROOT

CHROMIUM = os.environ.get("DICELIB_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
LATENCY_S = 1.0  # the bound for a lambda1 move with the inversion cached

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set DICELIB_CHROMIUM)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """Yield (base URL, token) of a JupyterLab serving a copy of notebook 07; stop it afterwards."""
    shutil.copy(ROOT / "notebooks" / "07-explore.ipynb", tmp_path / "07-explore.ipynb")
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), "dicelib-explore-test"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "DICELIB_REPORTS": str(tmp_path / "reports"), "OMP_NUM_THREADS": "1",
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_moving_lambda1_in_the_running_notebook_changes_the_edit_within_a_second(lab, tmp_path):
    url, token = lab
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(240_000)
            page.goto(f"{url}/lab/tree/07-explore.ipynb?token={token}")
            page.wait_for_function("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                                   " return w && w.sessionContext && w.sessionContext.session"
                                   " && w.sessionContext.session.kernel; }")
            page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.sessionContext.ready; }")
            ran = page.evaluate("async () => await window.jupyterapp.commands.execute('notebook:run-all-cells')")
            assert ran is not False, "JupyterLab could not run the notebook"
            edit = page.locator("img.dicelib-edit")
            edit.wait_for(state="visible")
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                                   " === 'idle'")
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .ansi-red-fg")
            assert errors.count() == 0, "a cell failed in JupyterLab"
            slider = page.locator(".widget-hslider").filter(has=page.locator("label", has_text="lambda1")).first
            readout = slider.locator(".widget-readout")
            assert readout.inner_text().strip() == "0.70"
            before = edit.get_attribute("src")
            page.evaluate("""() => {
                const img = document.querySelector('img.dicelib-edit');
                window.__edit_changed = null;
                new MutationObserver(() => { if (window.__edit_changed === null) window.__edit_changed = performance.now(); })
                    .observe(img, {attributes: true, attributeFilter: ['src']});
            }""")
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("0.2")
            start = page.evaluate("() => performance.now()")
            page.keyboard.press("Enter")
            page.wait_for_function("() => window.__edit_changed !== null", timeout=30_000)
            latency_ms = page.evaluate("() => window.__edit_changed") - start
            assert edit.get_attribute("src") != before
            assert readout.inner_text().strip() == "0.20"
            page.locator(".dicelib-scores").filter(has_text="cached inversion").wait_for(timeout=10_000)
            print(f"\nlambda1 0.70 -> 0.20: the shown edit changed {latency_ms:.0f} ms after the key press")
            # then drag the slider's handle to its right end (lambda1 = 1: the square goes back where the circle was)
            typed = edit.get_attribute("src")
            box = slider.locator(".noUi-handle").bounding_box()
            track = slider.locator(".noUi-target").bounding_box()
            page.evaluate("() => { window.__edit_changed = null; }")
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            drag = page.evaluate("() => performance.now()")
            page.mouse.move(track["x"] + track["width"] + 20, box["y"] + box["height"] / 2)  # one move: one new value
            page.mouse.up()
            page.wait_for_function("() => window.__edit_changed !== null", timeout=30_000)
            drag_ms = page.evaluate("() => window.__edit_changed") - drag
            page.wait_for_function("() => document.querySelector('.dicelib-explorer .widget-readout') !== null")
            assert readout.inner_text().strip() == "1.00" and edit.get_attribute("src") != typed
            print(f"lambda1 dragged 0.20 -> 1.00: the shown edit changed {drag_ms:.0f} ms after the drag began")
            assert drag_ms < LATENCY_S * 1000, f"the edit changed {drag_ms:.0f} ms after the drag began"
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("0.2")
            page.keyboard.press("Enter")
            page.locator(".dicelib-explorer").filter(has_text="lambda1 0.20, lambda2 0.80").wait_for(timeout=10_000)
            shot = os.environ.get("DICELIB_EXPLORE_SCREENSHOT")
            page.locator(".dicelib-explorer").screenshot(path=shot or str(tmp_path / "explore.png"))
            assert latency_ms < LATENCY_S * 1000, f"the edit changed {latency_ms:.0f} ms after lambda1 moved"
        finally:
            browser.close()
