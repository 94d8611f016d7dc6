"""Writing the pipeline's outputs: figures, tables (CSV + Markdown), metrics JSON and plot CSVs.

Every write goes to a temp file renamed into place, so an interrupted run never leaves a
half-written output behind. Paths come from dicelib.config (DICELIB_REPORTS redirects them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import config
from .core.atomic import atomic_write

__all__ = ["atomic_write", "jsonable", "save_figure", "save_metrics", "save_plot_data", "save_table"]


def jsonable(obj: Any) -> Any:
    """Return obj with NaN/inf floats as None and numpy/torch scalars as Python numbers (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def save_metrics(metrics: dict, name: str) -> Path:
    """Return the path of reports/metrics/<name>.json holding `metrics` (NaN written as null)."""
    return atomic_write(config.METRICS / f"{name}.json",
                        lambda f: f.write(json.dumps(jsonable(metrics), indent=2, sort_keys=True) + "\n"))


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
