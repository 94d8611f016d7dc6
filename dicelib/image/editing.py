"""Return ShapesBench editing results: DICE edits under settings, the baselines, and their exact scores.

`EditRunner` holds a model and a set of edit cases, inverts each source under its source prompt
(cached per inversion setting, so a lambda or injection sweep inverts once) and edits to the
target prompt; a sweep's settings that share an inversion run as one edit grid (`dicelib.edit_grid`:
one model call per step for all of them, each result as its lone edit would be). Scores per case: `edit_accuracy` (inside the edit mask, against the oracle
target) and `preservation` (outside it, against the source); `edit_score` is their harmonic
mean, the single number used to pick the best setting. Baselines:
- `lambda1_zero`: DICE from the same inversion with lambda1 = 0, lambda2 = 1 (noise only, no
  latents: SDEdit-like partial regeneration from x_tau);
- `inpainting_oracle_mask`: pixels outside the true edit mask clamped to the source, the inside
  regenerated under the target prompt (knows the answer's support: an upper reference);
- `regeneration`: a fresh sample for the target prompt (every token replaced).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import metrics as im
from ..core.api import edit_grid, invert
from ..core.settings import MASKED_STEPS, EditSettings
from ..errors import DiceError, Relation, choice, list_of, number
from ..core.schedules import LAMBDA_SCHEDULES, LambdaSchedule
from ..core.regeneration import regenerate
from ..io import LAMBDA, SHARED_RULES, stage_params
from .benchmark_build import PER_TYPE, SPLIT
from .shapes_model import encode

BASELINES = ("lambda1_zero", "inpainting_oracle_mask", "regeneration")
DICE_BASELINES = {"lambda1_zero": dict(lambda1=0.0, lambda2=1.0, lambda_schedule="uniform")}  # edits of the inversion
REGENERATION_ORDER = "confidence"  # the baselines' sampler (MaskGIT order: the stronger generator here)

ABLATION_PARAMS = stage_params(  # notebook 03
    "editing", "seed steps tau cfg_scale noise pseudo_inverse margin lambda1",
    sweep_split=SPLIT, sweep_per_type=PER_TYPE, eval_split=SPLIT, eval_per_type=PER_TYPE,
    pseudo_inverses=list_of(SHARED_RULES["pseudo_inverse"]), lambdas=list_of(LAMBDA), taus=list_of(SHARED_RULES["tau"]),
    cfg_scales=list_of(number()), injections=list_of(SHARED_RULES["injection"]), margins=list_of(SHARED_RULES["margin"]))
SCHEDULE_PARAMS = stage_params(  # notebook 04
    "lambda_schedules", "seed steps tau cfg_scale noise pseudo_inverse margin injection lambda1_end",
    Relation(("schedules", "lambdas", "lambda1_end"), "lambdas and lambda1_end > 0 when schedules include exponential",
             lambda kinds, lambdas, end: "exponential" not in kinds or min(*lambdas, end) > 0),
    split=SPLIT, per_type=PER_TYPE, schedules=list_of(choice(LAMBDA_SCHEDULES)), lambdas=list_of(LAMBDA))


class EditRunner:
    """Inverts and edits a fixed set of ShapesBench cases with one model, caching inversions."""

    def __init__(self, model: Any, cases: pd.DataFrame, grids: dict[str, np.ndarray], seed: int = 0,
                 progress: bool = False):
        # seed seeds every inversion (seed), edit (seed + 1) and baseline sample (seed + 2)
        self.model, self.cases, self.seed, self.progress = model, cases.reset_index(drop=True), seed, progress
        n = len(self.cases)
        self.source = torch.from_numpy(grids["source"].reshape(n, -1).astype(np.int64))  # [N, D]
        self.target = grids["target"].reshape(n, -1)
        self.mask = grids["mask"].reshape(n, -1)
        length = model.config.prompt_len
        self.source_cond = encode(list(self.cases["source_prompt"]), length)  # [N, L]
        self.target_cond = encode(list(self.cases["target_prompt"]), length)
        self._inversions: dict[tuple, Any] = {}
        self._baselines: dict[tuple, np.ndarray] = {}

    def inversion(self, s: EditSettings):
        """Return the (cached) inversion of every source under its source prompt."""
        key = s.inversion()
        if key not in self._inversions:
            gen = torch.Generator().manual_seed(self.seed)
            self._inversions[key] = invert(self.model, self.source, self.source_cond, generator=gen, **key.invert_kwargs())
        return self._inversions[key]

    def edit(self, s: EditSettings, cond: torch.Tensor | None = None) -> np.ndarray:
        """Return DICE edits [N, D] of every case under the target prompts (or `cond`)."""
        return self.edit_many([s], cond)[0]

    def edit_many(self, settings: list[EditSettings], cond: torch.Tensor | None = None) -> list[np.ndarray]:
        """Return DICE edits [N, D] of every case for each of `settings`, each as `edit` returns it alone.

        The settings that share an inversion run as one edit grid (one model call per step for all of
        them); each edit draws from its own generator seeded seed + 1, as a lone `edit` does.
        """
        by_inversion: dict[Any, list[int]] = {}
        for j, s in enumerate(settings):
            by_inversion.setdefault(s.inversion(), []).append(j)
        out: list[Any] = [None] * len(settings)
        target = self.target_cond if cond is None else cond
        for rows in by_inversion.values():
            edits = edit_grid(self.model, self.inversion(settings[rows[0]]), [settings[j] for j in rows],
                              conds=[target] * len(rows), progress=self.progress,
                              generators=[torch.Generator().manual_seed(self.seed + 1) for _ in rows])
            for j, x in zip(rows, edits):
                out[j] = x.cpu().numpy()
        return out

    def baseline(self, name: str, s: EditSettings) -> np.ndarray:
        """Return a baseline's outputs [N, D] with the steps, guidance and seed of `s` (cached)."""
        return self.baseline_outputs([name], s)[0]

    def baseline_outputs(self, names: list[str] | tuple[str, ...], s: EditSettings) -> list[np.ndarray]:
        """Return each baseline's outputs [N, D] with the steps, guidance and seed of `s` (cached); the ones
        that edit the inversion (DICE_BASELINES) run as one edit grid."""
        for name in names:
            if name not in BASELINES:
                raise DiceError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
        todo = [name for name in dict.fromkeys(names) if (name, s) not in self._baselines]
        edits = [name for name in todo if name in DICE_BASELINES]
        for name, out in zip(edits, self.edit_many([replace(s, **DICE_BASELINES[name]) for name in edits])):
            self._baselines[name, s] = out
        for name in todo:
            if name not in DICE_BASELINES:
                gen = torch.Generator().manual_seed(self.seed + 2)
                keep = dict(source=self.source, keep=torch.from_numpy(~self.mask)) if name != "regeneration" else {}
                self._baselines[name, s] = regenerate(self.model, self.target_cond, s.steps or MASKED_STEPS, s.cfg_scale,
                                                      generator=gen, noise=s.noise, order=REGENERATION_ORDER,
                                                      **keep).cpu().numpy()
        return [self._baselines[name, s] for name in names]

    def score(self, edited: np.ndarray, **columns: Any) -> pd.DataFrame:
        """Return per-case scores: id, type, edit_accuracy, preservation, edit_score (+ `columns`)."""
        acc = im.edit_accuracy(edited, self.target, self.mask)
        keep = im.preservation(edited, self.source.numpy(), self.mask)
        df = pd.DataFrame({"id": self.cases["id"], "type": self.cases["type"], "edit_accuracy": acc,
                           "preservation": keep, "edit_score": harmonic(acc, keep)})
        for k, v in columns.items():
            df[k] = v
        return df


def harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the harmonic mean of two scores in [0, 1] (0 when either is 0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a + b > 0, 2 * a * b / np.maximum(a + b, 1e-12), 0.0)


def summarize(per_case: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Return mean edit_accuracy / preservation / edit_score per `by` group and edit type, plus type="overall"."""
    cols = ["edit_accuracy", "preservation", "edit_score"]
    typed = per_case.groupby([*by, "type"], sort=False, dropna=False)[cols].mean().reset_index()
    overall = per_case.groupby(by, sort=False, dropna=False)[cols].mean().reset_index().assign(type="overall") \
        if by else per_case[cols].mean().to_frame().T.assign(type="overall")
    return pd.concat([overall, typed], ignore_index=True)


def sweep(runner: EditRunner, base: EditSettings, name: str, values: list[Any], label: str | None = None) -> pd.DataFrame:
    """Return the summary of DICE edits with `name` set to each of `values` (others as in `base`).

    `name` is an EditSettings field; `label` names the column (default: `name`). Sweeping lambda1
    from a base with lambda2=None is the paper's ablation convention lambda2 = 1 - lambda1.
    """
    edits = runner.edit_many([replace(base, **{name: v}) for v in values])  # one grid per inversion
    rows = [runner.score(x, **{label or name: v}) for v, x in zip(values, edits)]
    return summarize(pd.concat(rows, ignore_index=True), [label or name])


def schedule_sweep(runner: EditRunner, base: EditSettings, schedules: list[str], lambdas: list[float],
                   lambda1_end: float = 1.0) -> pd.DataFrame:
    """Return the summary of DICE edits for each lambda schedule x start value lambda1 (lambda2 = 1 - lambda1 per step).

    Non-uniform schedules move lambda1 from the start value (noisiest step) to `lambda1_end`.
    """
    points = [(kind, lam) for kind in schedules for lam in lambdas]
    edits = runner.edit_many([replace(base, lambda_schedule=kind, lambda1=lam, lambda2=None, lambda1_end=lambda1_end)
                              for kind, lam in points])  # one inversion: one grid
    rows = [runner.score(x, schedule=kind, lambda1=lam) for (kind, lam), x in zip(points, edits)]
    return summarize(pd.concat(rows, ignore_index=True), ["schedule", "lambda1"])


def baselines(runner: EditRunner, s: EditSettings, names: tuple[str, ...] = BASELINES) -> pd.DataFrame:
    """Return the summary of each baseline (column `method`) run with the settings of `s`."""
    outputs = runner.baseline_outputs(names, s)
    per_case = pd.concat([runner.score(out, method=n) for n, out in zip(names, outputs)], ignore_index=True)
    return summarize(per_case, ["method"])


def best_row(summary: pd.DataFrame, column: str) -> Any:
    """Return the value of `column` with the highest overall edit_score in a sweep summary."""
    overall = summary[summary["type"] == "overall"]
    return overall.loc[overall["edit_score"].idxmax(), column]


def editing_report(dice: pd.DataFrame) -> dict[str, float]:
    """Return reports/metrics/editing.json: DICE's overall scores at the chosen settings (per type and
    beside the baselines: final_table; the settings: settings_table)."""
    d = dice[dice["type"] == "overall"].iloc[0]
    return {k: round(float(d[k]), 4) for k in ("edit_accuracy", "preservation", "edit_score")}


def settings_table(s: EditSettings, seed: int) -> pd.DataFrame:
    """Return the settings the sweeps chose, one row each: columns setting, value (reports/tables/editing_settings.csv)."""
    return pd.DataFrame([{"setting": k, "value": str(v)} for k, v in {**asdict(s), "seed": seed}.items()])


def sweep_table(sweeps: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Return all sweep summaries stacked: columns sweep, value, type and the scores."""
    parts = [df.rename(columns={name: "value"}).assign(sweep=name, value=lambda d: d["value"].astype(str))
             for name, df in sweeps.items()]
    cols = ["sweep", "value", "type", "edit_accuracy", "preservation", "edit_score"]
    return pd.concat(parts, ignore_index=True)[cols]


def sweep_plots(sweeps: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Return per sweep its overall scores, one row per swept value: columns <sweep>, edit_accuracy,
    preservation, edit_score (the DVC plot reports/plots/editing_sweeps/<sweep>.csv)."""
    return {name: df.loc[df["type"] == "overall", [name, "edit_accuracy", "preservation", "edit_score"]]
            .reset_index(drop=True) for name, df in sweeps.items()}


def final_table(dice: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Return DICE and the baselines side by side: columns method, type and the scores."""
    return pd.concat([dice.assign(method="dice"), base], ignore_index=True)[
        ["method", "type", "edit_accuracy", "preservation", "edit_score"]]


def example_rows(cases: pd.DataFrame, per_type: int = 1) -> np.ndarray:
    """Return the row indices of the first `per_type` cases of every edit type (for example figures)."""
    return np.flatnonzero(cases.groupby("type", sort=False).cumcount().to_numpy() < per_type)


def example_columns(runner: EditRunner, s: EditSettings, dice_edits: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Return named output grids [len(rows), 16, 16] for an example figure: target, DICE and each baseline."""
    side = int(np.sqrt(runner.target.shape[1]))
    out = {"oracle target": runner.target[rows], "DICE": dice_edits[rows]}
    out |= {name: x[rows] for name, x in zip(BASELINES, runner.baseline_outputs(BASELINES, s))}
    return {k: v.reshape(-1, side, side) for k, v in out.items()}


def schedule_curves(inv: Any, schedules: list[str], lambdas: list[float], lambda1_end: float = 1.0) -> pd.DataFrame:
    """Return lambda1 per editing step for each schedule and start value: columns schedule, start, step, level, lambda1."""
    levels = inv.levels.flip(0)  # editing order: noisiest first
    rows = []
    for kind in schedules:
        for lam in lambdas:
            values = LambdaSchedule(kind, lam, lambda1_end).values(levels).tolist()
            rows += [{"schedule": kind, "start": lam, "step": i, "level": float(levels[i]), "lambda1": v}
                     for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def schedule_report(table: pd.DataFrame) -> dict[str, Any]:
    """Return reports/metrics/lambda_schedules.json: the best schedule (highest overall edit_score over
    schedules and start values) and its overall scores (every schedule: schedule_plot, the tables)."""
    overall = table[table["type"] == "overall"]
    r = overall.loc[overall["edit_score"].idxmax()]
    return {"schedule": str(r["schedule"]),
            **{k: round(float(r[k]), 4) for k in ("edit_accuracy", "preservation", "edit_score")}}


def schedule_plot(table: pd.DataFrame) -> pd.DataFrame:
    """Return the overall edit_score per start value lambda1 (rows) and schedule (columns): the DVC plot
    reports/plots/lambda_schedules.csv, one line per schedule."""
    overall = table[table["type"] == "overall"]
    wide = overall.pivot(index="lambda1", columns="schedule", values="edit_score")
    return wide[list(dict.fromkeys(overall["schedule"]))].reset_index().rename_axis(columns=None)
