"""Return paths of text-track outputs written atomically (temp file, then rename).

A stage killed half-way must never leave a half-written metrics file or table that DVC would
then hash; every writer here writes beside the target and renames.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .config import FIGURES, METRICS, PLOTS, REPORTS, TABLES


def _atomic(path: Path, write: Any, mode: str = "w") -> Path:
    """Return `path` after `write(handle)` filled a temp file in the same folder that replaced it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Return `path` after writing `text` atomically."""
    return _atomic(path, lambda h: h.write(text))


def write_json(path: Path, obj: Any) -> Path:
    """Return `path` after writing `obj` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_table(df: pd.DataFrame, name: str, root: Path | None = None) -> tuple[Path, Path]:
    """Return the (csv, md) paths after writing `df` to tables/<name>.csv and .md atomically."""
    folder = TABLES if root is None else Path(root) / "tables"
    csv = write_text(folder / f"{name}.csv", df.to_csv(index=False))
    md = write_text(folder / f"{name}.md", df.to_markdown(index=False) + "\n")
    return csv, md


def write_plot_csv(df: pd.DataFrame, name: str, root: Path | None = None) -> Path:
    """Return the path after writing `df` to plots/<name>.csv (a DVC plot) atomically."""
    folder = PLOTS if root is None else Path(root) / "plots"
    return write_text(folder / f"{name}.csv", df.to_csv(index=False))


def write_metrics(obj: dict, name: str, root: Path | None = None) -> Path:
    """Return the path after writing `obj` to metrics/<name>.json atomically."""
    folder = METRICS if root is None else Path(root) / "metrics"
    return write_json(folder / f"{name}.json", obj)


def save_figure(fig: Any, name: str, root: Path | None = None, dpi: int = 120) -> Path:
    """Return the path after saving a matplotlib figure to figures/<name>.png atomically."""
    folder = FIGURES if root is None else Path(root) / "figures"
    return _atomic(folder / f"{name}.png", lambda h: fig.savefig(h, format="png", dpi=dpi, bbox_inches="tight"), "wb")


def output_root(write_reports: bool) -> Path:
    """Return REPORTS when the pipeline asks for its outputs, else a fresh temp folder (teaching runs)."""
    return REPORTS if write_reports else Path(tempfile.mkdtemp(prefix="dicelib-reports-"))
