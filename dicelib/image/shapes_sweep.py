"""Return a ShapesBench edit sweep (lambda1 x tau grid) run through `dicelib.sweep`: the `shapes-sweep` stage.

One work unit is one case at one tau: the worker inverts the case once and edits it for every
lambda1 as one edit grid, scoring each edit exactly (edit accuracy inside the edit mask, preservation
outside, their harmonic mean). The merge writes `reports/tables/shapes_sweep.{csv,md}` (mean scores
per tau x lambda1, overall and per edit type), `shapes_sweep_best.{csv,md}` (the best grid point overall,
with the case, grid and failure counts) and `reports/metrics/shapes_sweep.json` (its preservation and edit
score). The same command runs in this process or fans out on a Ray cluster:

    python -m dicelib.image.shapes_sweep --split test --per-type 2 --lambdas 0.5,0.7,0.9 --taus 0.6,0.8
    python -m dicelib.image.shapes_sweep ... --engine ray --address auto
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import config, kernels
from ..core.api import edit_grid, invert
from ..core.settings import EditSettings
from ..errors import DiceError, check_choice, check_device, integer, list_of, optional
from ..io import LAMBDA, SHARED_RULES, Stage, run_stage, save_metrics, save_table, stage_params, typed
from ..sweep import add_engine_arguments, check_folder, file_fingerprint, merge, parse_floats, run_sweep, summary_line
from . import metrics as im
from .benchmark_build import BENCH_DIR, PER_TYPE, SPLIT, SPLITS
from .shapes_model import CHECKPOINT, encode

NAME = "shapes_sweep"


@dataclass(frozen=True)
class ShapesSweep:
    """A lambda1 x tau grid of DICE edits on the first `per_type` cases of each edit type of a split."""

    lambdas: tuple[float, ...] = (0.5, 0.7, 0.9)
    taus: tuple[float, ...] = (0.6, 0.8)
    split: str = "test"
    per_type: int = 2
    base: EditSettings = EditSettings(steps=16, cfg_scale=3.0, noise="mask", pseudo_inverse="lai")
    data: str = str(BENCH_DIR)
    checkpoint: str = str(CHECKPOINT)
    device: str | None = None  # None: CUDA when available
    reports: str | None = None  # outputs under reports/ (None: dicelib.config.REPORTS)
    name: str = NAME
    scores: tuple[str, ...] = ("edit_accuracy", "preservation", "edit_score")  # finite in every row (dicelib.sweep)

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        if isinstance(self.per_type, bool) or int(self.per_type) < 1:
            raise DiceError(f"per_type = {self.per_type!r} is not allowed; expected an int >= 1")
        for name, values, lo in (("lambdas", self.lambdas, 0.0), ("taus", self.taus, 0.0)):
            bad = [v for v in values if not (lo <= v <= 1.0) or (name == "taus" and v == 0)]
            if not values or bad:
                raise DiceError(f"{name} = {list(values)!r} is not allowed; expected numbers in "
                                f"{'(0, 1]' if name == 'taus' else '[0, 1]'}")

    def _cases(self) -> tuple[Any, dict[str, np.ndarray]]:
        from .benchmark_build import load, subset

        return subset(*load(Path(self.data), split=self.split), self.per_type)

    def cases(self) -> list[str]:
        return list(self._cases()[0]["id"])

    def grid(self) -> list[dict[str, Any]]:
        return [{"tau": float(t), "lambda1": float(lam)} for t in self.taus for lam in self.lambdas]

    def settings(self, point: dict[str, Any]) -> EditSettings:
        return replace(self.base, tau=point["tau"], lambda1=point["lambda1"], lambda2=None)

    def inversion_key(self, point: dict[str, Any]) -> Any:
        return self.settings(point).inversion()

    def fingerprint(self) -> dict[str, Any]:
        data = Path(self.data)
        return {"base": repr(self.base), "split": self.split,
                "model": file_fingerprint(self.checkpoint), "data": file_fingerprint(data / "cases.csv", data / "grids.npz")}

    def setup(self) -> dict[str, Any]:
        from .shapes_model import load

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        cases, grids = self._cases()
        model = load(self.checkpoint, device=device)
        n = len(cases)
        return {"model": model, "device": device, "row": {c: i for i, c in enumerate(cases["id"])},
                "cases": cases, "source": grids["source"].reshape(n, -1).astype(np.int64),
                "target": grids["target"].reshape(n, -1), "mask": grids["mask"].reshape(n, -1)}

    def run(self, state: dict[str, Any], case: str, points: list[int], seed: int) -> list[dict[str, Any]]:
        """Return one row of scores per grid point of `points` for `case` (one inversion, one edit grid)."""
        model, device, i = state["model"], state["device"], state["row"][case]
        info = state["cases"].iloc[i]
        grid = self.grid()
        settings = [self.settings(grid[j]) for j in points]
        length = model.config.prompt_len
        source = torch.from_numpy(state["source"][i:i + 1]).to(device)
        gen = lambda offset: torch.Generator(device=device).manual_seed(seed + offset)  # noqa: E731
        inv = invert(model, source, encode([info["source_prompt"]], length).to(device), generator=gen(0),
                     **settings[0].invert_kwargs())
        target = encode([info["target_prompt"]], length).to(device)
        edits = edit_grid(model, inv, settings, conds=[target] * len(settings), generators=[gen(1) for _ in settings])
        rows = []
        for j, x in zip(points, edits):
            pred = x.cpu().numpy()
            acc = float(im.edit_accuracy(pred, state["target"][i:i + 1], state["mask"][i:i + 1])[0])
            keep = float(im.preservation(pred, state["source"][i:i + 1], state["mask"][i:i + 1])[0])
            rows.append({"id": case, "type": info["type"], **grid[j], "edit_accuracy": acc, "preservation": keep,
                         "edit_score": 2 * acc * keep / (acc + keep) if acc + keep > 0 else 0.0})
        return rows

    def merge(self, rows: list[dict[str, Any]], failed: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the tables (every grid point; the best one) and the metrics under reports/; return the best point."""
        import pandas as pd

        from .editing import summarize

        reports = Path(self.reports or config.REPORTS)
        if not rows:
            raise DiceError(f"every unit of {self.name} failed (first: {failed[0]['error'] if failed else 'none'})")
        summary = summarize(pd.DataFrame(rows), ["tau", "lambda1"])
        save_table(summary, self.name, folder=reports / "tables")
        overall = summary[summary["type"] == "overall"]
        best = overall.loc[overall["edit_score"].idxmax()]
        metrics = {"cases": len({r["id"] for r in rows}), "grid_points": len(self.grid()), "failed_units": len(failed),
                   "best_tau": float(best["tau"]), "best_lambda1": float(best["lambda1"]),
                   **{f"best_{k}": round(float(best[k]), 4) for k in ("edit_accuracy", "preservation", "edit_score")}}
        save_table(pd.DataFrame([metrics]), f"{self.name}_best", folder=reports / "tables")
        # the metrics file holds what `dvc metrics show` compares across runs, named as in the other image files
        save_metrics({k: metrics[f"best_{k}"] for k in ("preservation", "edit_score")}, self.name,
                     folder=reports / "metrics")
        return metrics


def records_folder(reports: str | Path | None = None) -> Path:
    """Return where the stage keeps its unit records (git-ignored; a rerun resumes from them)."""
    return Path(reports or config.REPORTS) / "sweeps" / NAME


PARAMS = stage_params(  # the shapes_sweep group of params.yaml (and base.seed), checked before any work
    "shapes_sweep", "seed steps cfg_scale noise pseudo_inverse margin", split=SPLIT, per_type=PER_TYPE,
    lambdas=list_of(LAMBDA), taus=list_of(SHARED_RULES["tau"]), threads=optional(integer(1)))


def _is_floats(text: str) -> bool:
    try:
        parse_floats(text, "")
    except DiceError:
        return False
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the sweep and merge it (the `shapes-sweep` stage; `dicelib sweep` is the same with typer)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=typed(int), default=0)
    p.add_argument("--split", default="test")
    p.add_argument("--per-type", type=typed(int), default=2)
    p.add_argument("--lambdas", default="0.5,0.7,0.9")
    p.add_argument("--taus", default="0.6,0.8")
    p.add_argument("--steps", type=typed(int), default=16)
    p.add_argument("--cfg-scale", type=lambda s: None if s in ("None", "null") else typed(float)(s), default=3.0)
    p.add_argument("--noise", default="mask")
    p.add_argument("--pseudo-inverse", default="lai")
    p.add_argument("--margin", type=typed(float), default=1.0)
    p.add_argument("--data", default=str(BENCH_DIR))
    p.add_argument("--checkpoint", default=str(CHECKPOINT))
    p.add_argument("--reports", default=None, help="output root (default: reports/, or DICELIB_REPORTS)")
    p.add_argument("--device", default=None)
    add_engine_arguments(p)
    a = p.parse_args(argv)
    floats = lambda text: [*parse_floats(text, "")] if _is_floats(text) else text  # noqa: E731 - the check names bad text
    PARAMS.check(seed=a.seed, split=a.split, per_type=a.per_type, lambdas=floats(a.lambdas), taus=floats(a.taus),
                 steps=a.steps, cfg_scale=a.cfg_scale, noise=a.noise, pseudo_inverse=a.pseudo_inverse, margin=a.margin,
                 threads=a.threads)
    check_device(a.device)
    check_folder("--reports", a.reports)
    base = EditSettings(steps=a.steps, cfg_scale=a.cfg_scale, noise=a.noise, pseudo_inverse=a.pseudo_inverse,
                        margin=a.margin)
    task = ShapesSweep(parse_floats(a.lambdas, "lambdas"), parse_floats(a.taus, "taus"), a.split, a.per_type, base,
                       a.data, a.checkpoint, a.device, a.reports)
    reports = Path(a.reports or config.REPORTS)
    outputs = [reports / "tables" / f"{NAME}{end}" for end in (".csv", ".md", "_best.csv", "_best.md")]
    with Stage("shapes-sweep", [*outputs, reports / "metrics" / f"{NAME}.json"]) as stage:
        ran = run_sweep(task, a.seed, records_folder(a.reports), engine=a.engine, address=a.address, workers=a.workers,
                        max_retries=a.max_retries, threads=a.threads)
        print(summary_line(ran))
        # the merge writes under a staging copy of reports/: published together when all is written
        return merge(replace(task, reports=str(stage.path(outputs[0]).parent.parent)), a.seed, records_folder(a.reports))


if __name__ == "__main__":
    kernels.pin_process()  # same bytes on any x86-64 CPU (docs/reproducibility.md)
    run_stage(main)
