"""Return (and run) the JupyterLab command of `make lab`: the server rooted at notebooks/, for any user, root included.

    python -m dicelib.lab                      # what `make lab` runs
    python -m dicelib.lab --no-browser --port 8890

Jupyter refuses to start as root ("Running as root is not recommended. Use --allow-root"), which is the user of
most containers, cloud notebooks and CI runners: the command adds --allow-root there. Other arguments go to
`jupyter lab` as they are.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .config import ROOT


def command(extra: list[str] | None = None, uid: int | None = None) -> list[str]:
    """Return the argv that starts JupyterLab on the notebooks (`uid`: the user's id, default this process's)."""
    uid = os.getuid() if uid is None and hasattr(os, "getuid") else uid
    root = ["--allow-root"] if uid == 0 else []
    return [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={ROOT / 'notebooks'}", *root, *(extra or [])]


def main(argv: list[str] | None = None) -> None:
    """Run JupyterLab on the notebooks until it stops; exit with its status."""
    raise SystemExit(subprocess.call(command(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
