"""The one atomic file writer: a temp file in the target folder, renamed into place.

It lives in `core` because `Inversion.save` needs it and `core` imports nothing outside itself;
`dicelib.io` re-exports it for everything else.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Return `path` after `write(file)` filled a temp file in the same folder that then replaced it.

    A symbolic link at `path` is kept: the file it points to is replaced. A directory there is a DiceError.
    """
    from ..errors import DiceError

    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise DiceError(f"cannot write {str(path)!r}: it is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
