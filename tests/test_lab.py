"""`make lab`: JupyterLab starts on the notebooks for any user (root included) and serves every notebook."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from dicelib import lab
from dicelib.config import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_root_gets_allow_root_and_others_do_not():
    assert "--allow-root" in lab.command(uid=0) and "--allow-root" not in lab.command(uid=1000)
    assert lab.command(["--port", "1"], uid=1000)[-2:] == ["--port", "1"]


def test_the_server_lists_every_notebook_through_its_rest_api(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "run"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}  # no user settings, no files left behind
    args = ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}"]
    server = subprocess.Popen([sys.executable, "-m", "dicelib.lab", *args], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        listing, deadline = None, time.monotonic() + 90
        while listing is None and time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()[-3000:]  # e.g. "Running as root is not recommended"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=5) as r:
                    listing = json.load(r)
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert listing is not None, "the server did not answer within 90 s"
        served = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
        on_disk = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
        assert on_disk and on_disk <= served, sorted(on_disk - served)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
