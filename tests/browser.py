"""Headless Chromium for the tests that look at pages: found on PATH or skipped with the reason."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")
# headless, as root too; no background connections; every host name fails to resolve and every request that is
# not to the loopback goes to a closed port: the page sees no network
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost", "--proxy-server=http://127.0.0.1:9",
           "--proxy-bypass-list=<-loopback>")


def chromium() -> str:
    """Return the path of a Chromium on PATH; skip the test when there is none."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium on PATH (apt-get install chromium); the browser tests need one")


def headless(url: str, *args: str, budget_ms: int = 10000, timeout: float = 120) -> str:
    """Return the DOM of `url` after `budget_ms` of virtual time in offline headless Chromium (extra flags: args)."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([chromium(), *FLAGS, *OFFLINE, f"--user-data-dir={profile}",
                              f"--virtual-time-budget={budget_ms}", *args, url],
                             capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
