"""Project paths, anchored to the repository root so code runs from any working directory."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # repository root (papermill and nbval start elsewhere)
DATA = ROOT / "data"
MODELS = ROOT / "models"
# DICELIB_REPORTS redirects every output (the test suite points it at a temp dir so teaching-size
# notebook runs never overwrite the pipeline's committed reports)
REPORTS = Path(os.environ.get("DICELIB_REPORTS", ROOT / "reports"))
FIGURES = REPORTS / "figures"
TABLES = REPORTS / "tables"
METRICS = REPORTS / "metrics"
PLOTS = REPORTS / "plots"

