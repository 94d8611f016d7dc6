"""Writing the pipeline's outputs: figures, tables (CSV + Markdown), metrics JSON and plot CSVs.

Every write goes to a temp file renamed into place, so an interrupted run never leaves a
half-written output behind. Paths come from dicelib.config (DICELIB_REPORTS redirects them).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from . import config


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Return `path` after `write(file)` filled a temp file in the same folder that then replaced it."""
    path = Path(path)
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


def _clean(obj: Any) -> Any:
    """Return obj with NaN/inf floats as None and numpy/torch scalars as Python numbers (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def save_metrics(metrics: dict, name: str) -> Path:
    """Return the path of reports/metrics/<name>.json holding `metrics` (NaN written as null)."""
    return atomic_write(config.METRICS / f"{name}.json",
                        lambda f: f.write(json.dumps(_clean(metrics), indent=2, sort_keys=True) + "\n"))


def save_table(df: Any, name: str, floatfmt: str = ".6g") -> Path:
    """Return the path of reports/tables/<name>.csv after writing it and its Markdown twin <name>.md."""
    atomic_write(config.TABLES / f"{name}.md", lambda f: f.write(df.to_markdown(index=False, floatfmt=floatfmt) + "\n"))
    return atomic_write(config.TABLES / f"{name}.csv", lambda f: df.to_csv(f, index=False))


def save_plot_data(df: Any, name: str) -> Path:
    """Return the path of reports/plots/<name>.csv (a DVC plot source)."""
    return atomic_write(config.PLOTS / f"{name}.csv", lambda f: df.to_csv(f, index=False))


def save_figure(fig: Any, name: str, dpi: int = 120) -> Path:
    """Return the path of reports/figures/<name>.png after saving the matplotlib figure."""
    return atomic_write(config.FIGURES / f"{name}.png", lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"), mode="wb")
