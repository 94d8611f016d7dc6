"""Return ShapesBench editing results: DICE edits under settings, the baselines, and their exact scores.

`EditRunner` holds a model and a set of edit cases, inverts each source under its source prompt
(cached per inversion setting, so a lambda or injection sweep inverts once) and edits to the
target prompt; a sweep's settings that share an inversion run as one edit grid (`dicelib.edit_grid`:
one model call per step for all of them, each result as its lone edit would be). Scores per case: `edit_accuracy` (inside the edit mask, against the oracle
target) and `preservation` (outside it, against the source); `edit_score` is their harmonic
mean, the single number used to pick the best setting; `exact_parse` (1 when ShapesBench's exact
parser reads the edit as exactly the target prompt, sizes included). Summaries give each score's
mean over cases with a bootstrap 95 % interval over cases (`_lo`, `_hi`). Baselines:
- `lambda1_zero`: DICE from the same inversion with lambda1 = 0, lambda2 = 1 (noise only, no
  latents: SDEdit-like partial regeneration from x_tau);
- `inpainting_oracle_mask`: pixels outside the true edit mask clamped to the source, the inside
  regenerated under the target prompt (knows the answer's support: an upper reference);
- `regeneration`: a fresh sample for the target prompt (every token replaced).

`ablations` runs notebook 03 on several models: the sweeps choose each model's settings on the
sweep split (val), then DICE's lambda sweep at those settings and every baseline run on the same
eval-split (test) cases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import metrics as im
from . import models as image_models
from . import shapesbench as sb
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
REGENERATION_ORDER = "confidence"  # the baselines' default sampler (each model's: image_models.REGENERATION_ORDERS)
SCORES = ("edit_accuracy", "preservation", "edit_score", "exact_parse")
N_BOOT = 1000  # bootstrap resamples of the cases for every 95 % interval
# notebook 03's sweeps in order: (name, EditSettings field); each keeps its best value for the next
SWEEPS = (("pseudo_inverse", "pseudo_inverse"), ("lambda", "lambda1"), ("tau", "tau"), ("cfg_scale", "cfg_scale"),
          ("injection", "injection"), ("margin", "margin"))

MODELS = list_of(image_models.MODEL)  # the `models` parameter of notebooks 02-04
ABLATION_PARAMS = stage_params(  # notebook 03
    "editing", "seed steps tau cfg_scale noise pseudo_inverse margin lambda1", models=MODELS,
    sweep_split=SPLIT, sweep_per_type=PER_TYPE, eval_split=SPLIT, eval_per_type=PER_TYPE,
    pseudo_inverses=list_of(SHARED_RULES["pseudo_inverse"]), lambdas=list_of(LAMBDA), taus=list_of(SHARED_RULES["tau"]),
    cfg_scales=list_of(number()), injections=list_of(SHARED_RULES["injection"]), margins=list_of(SHARED_RULES["margin"]))
SCHEDULE_PARAMS = stage_params(  # notebook 04
    "lambda_schedules", "seed steps tau cfg_scale noise pseudo_inverse margin injection lambda1_end",
    Relation(("schedules", "lambdas", "lambda1_end"), "lambdas and lambda1_end > 0 when schedules include exponential",
             lambda kinds, lambdas, end: "exponential" not in kinds or min(*lambdas, end) > 0),
    split=SPLIT, per_type=PER_TYPE, schedules=list_of(choice(LAMBDA_SCHEDULES)), lambdas=list_of(LAMBDA), models=MODELS)


class EditRunner:
    """Inverts and edits a fixed set of ShapesBench cases with one model, caching inversions."""

    def __init__(self, model: Any, cases: pd.DataFrame, grids: dict[str, np.ndarray], seed: int = 0,
                 progress: bool = False, regeneration_order: str = REGENERATION_ORDER):
        # seed seeds every inversion (seed), edit (seed + 1) and baseline sample (seed + 2)
        self.model, self.cases, self.seed, self.progress = model, cases.reset_index(drop=True), seed, progress
        self.regeneration_order = regeneration_order
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
                                                      generator=gen, noise=s.noise, order=self.regeneration_order,
                                                      **keep).cpu().numpy()
        return [self._baselines[name, s] for name in names]

    def score(self, edited: np.ndarray, **columns: Any) -> pd.DataFrame:
        """Return per-case scores: id, type, edit_accuracy, preservation, edit_score, exact_parse (+ `columns`)."""
        acc = im.edit_accuracy(edited, self.target, self.mask)
        keep = im.preservation(edited, self.source.numpy(), self.mask)
        parse = [float(sb.matches_prompt(x, p, sizes=True)) for x, p in zip(edited, self.cases["target_prompt"])]
        df = pd.DataFrame({"id": self.cases["id"], "type": self.cases["type"], "edit_accuracy": acc,
                           "preservation": keep, "edit_score": harmonic(acc, keep), "exact_parse": parse})
        for k, v in columns.items():
            df[k] = v
        return df


def harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the harmonic mean of two scores in [0, 1] (0 when either is 0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a + b > 0, 2 * a * b / np.maximum(a + b, 1e-12), 0.0)


def bootstrap_ci(values: np.ndarray, seed: int = 0, n_boot: int = N_BOOT, level: float = 0.95) -> tuple[float, float]:
    """Return the bootstrap `level` interval (percentiles) of the mean of `values` over resampled cases (NaNs dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def summarize(per_case: pd.DataFrame, by: list[str], ci: bool = False, seed: int = 0) -> pd.DataFrame:
    """Return the mean of each score per `by` group and edit type, plus type="overall" (all types).

    With ci=True each score also gets `<score>_lo` and `<score>_hi`, its bootstrap 95 % interval over
    the group's cases (resampled with a generator seeded `seed`).
    """
    cols = [c for c in SCORES if c in per_case]
    rows = []
    keys = by or []
    groups = [((), per_case)] if not keys else per_case.groupby(keys, sort=False, dropna=False)
    for key, grp in groups:
        key = key if isinstance(key, tuple) else (key,)
        for typ, part in [("overall", grp), *grp.groupby("type", sort=False)]:
            row = dict(zip(keys, key), type=typ)
            for c in cols:
                row[c] = float(part[c].mean())
                if ci:
                    row[f"{c}_lo"], row[f"{c}_hi"] = bootstrap_ci(part[c].to_numpy(), seed)
            rows.append(row)
    return pd.DataFrame(rows)


def sweep(runner: EditRunner, base: EditSettings, name: str, values: list[Any], label: str | None = None,
          ci: bool = False) -> pd.DataFrame:
    """Return the summary of DICE edits with `name` set to each of `values` (others as in `base`).

    `name` is an EditSettings field; `label` names the column (default: `name`). Sweeping lambda1
    from a base with lambda2=None is the paper's ablation convention lambda2 = 1 - lambda1.
    """
    edits = runner.edit_many([replace(base, **{name: v}) for v in values])  # one grid per inversion
    rows = [runner.score(x, **{label or name: v}) for v, x in zip(values, edits)]
    return summarize(pd.concat(rows, ignore_index=True), [label or name], ci=ci, seed=runner.seed)


def schedule_sweep(runner: EditRunner, base: EditSettings, schedules: list[str], lambdas: list[float],
                   lambda1_end: float = 1.0, ci: bool = False) -> pd.DataFrame:
    """Return the summary of DICE edits for each lambda schedule x start value lambda1 (lambda2 = 1 - lambda1 per step).

    Non-uniform schedules move lambda1 from the start value (noisiest step) to `lambda1_end`.
    """
    points = [(kind, lam) for kind in schedules for lam in lambdas]
    edits = runner.edit_many([replace(base, lambda_schedule=kind, lambda1=lam, lambda2=None, lambda1_end=lambda1_end)
                              for kind, lam in points])  # one inversion: one grid
    rows = [runner.score(x, schedule=kind, lambda1=lam) for (kind, lam), x in zip(points, edits)]
    return summarize(pd.concat(rows, ignore_index=True), ["schedule", "lambda1"], ci=ci, seed=runner.seed)


def baselines(runner: EditRunner, s: EditSettings, names: tuple[str, ...] = BASELINES, ci: bool = False) -> pd.DataFrame:
    """Return the summary of each baseline (column `method`) run with the settings of `s`."""
    outputs = runner.baseline_outputs(names, s)
    per_case = pd.concat([runner.score(out, method=n) for n, out in zip(names, outputs)], ignore_index=True)
    return summarize(per_case, ["method"], ci=ci, seed=runner.seed)


def best_row(summary: pd.DataFrame, column: str) -> Any:
    """Return the value of `column` with the highest overall edit_score in a sweep summary."""
    overall = summary[summary["type"] == "overall"]
    value = overall.loc[overall["edit_score"].idxmax(), column]
    return value.item() if hasattr(value, "item") else value  # a plain float / str for EditSettings


HEADLINE = ("exact_parse", "preservation", "edit_score")  # each model's metrics file (notebooks 03, 04)


def headline(summary: pd.DataFrame) -> dict[str, float]:
    """Return the overall exact_parse, preservation and edit_score of a one-setting summary, rounded (a metrics file)."""
    d = summary[summary["type"] == "overall"].iloc[0]
    return {k: round(float(d[k]), 4) for k in HEADLINE}


def editing_report(dice: pd.DataFrame) -> dict[str, float]:
    """Return DICE's overall headline scores at the chosen settings (reports/metrics/editing_<model>.json)."""
    return headline(dice)


def settings_table(s: EditSettings, seed: int) -> pd.DataFrame:
    """Return the settings the sweeps chose, one row each: columns setting, value (reports/tables/editing_settings.csv)."""
    return pd.DataFrame([{"setting": k, "value": str(v)} for k, v in {**asdict(s), "seed": seed}.items()])


def sweep_table(sweeps: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Return all sweep summaries stacked: columns [model,] sweep, value, type and the scores (with intervals)."""
    parts = [df.rename(columns={name: "value"}).assign(sweep=name, value=lambda d: d["value"].astype(str))
             for name, df in sweeps.items()]
    out = pd.concat(parts, ignore_index=True)
    lead = [c for c in ("model", "sweep", "value", "type") if c in out]
    return out[lead + [c for c in out if c not in lead]]


def sweep_plots(sweeps: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Return per sweep (and model, when the summaries have a `model` column: "<model>_<sweep>") its overall
    scores, one row per swept value: columns <sweep>, edit_accuracy, preservation, edit_score (the DVC plot
    reports/plots/editing_sweeps/<name>.csv)."""
    out = {}
    for name, df in sweeps.items():
        overall = df[df["type"] == "overall"]
        groups = overall.groupby("model", sort=False) if "model" in overall else [(None, overall)]
        for model, part in groups:
            key = name if model is None else f"{model}_{name}"
            out[key] = part[[name, "edit_accuracy", "preservation", "edit_score"]].reset_index(drop=True)
    return out


def final_table(dice: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Return DICE and the baselines side by side: columns method, type and the scores."""
    both = pd.concat([dice.assign(method="dice"), base], ignore_index=True)
    return both[["method", "type", *[c for c in both if c not in ("method", "type")]]]


def example_rows(cases: pd.DataFrame, per_type: int = 1) -> np.ndarray:
    """Return the row indices of the first `per_type` cases of every edit type (for example figures)."""
    return np.flatnonzero(cases.groupby("type", sort=False).cumcount().to_numpy() < per_type)


def example_columns(runner: EditRunner, s: EditSettings, dice_edits: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Return named output grids [len(rows), 16, 16] for an example figure: target, DICE and each baseline."""
    side = int(np.sqrt(runner.target.shape[1]))
    out = {"oracle target": runner.target[rows], "DICE": dice_edits[rows]}
    out |= {name: x[rows] for name, x in zip(BASELINES, runner.baseline_outputs(BASELINES, s))}
    return {k: v.reshape(-1, side, side) for k, v in out.items()}


@dataclass
class Ablation:
    """Notebook 03 on several models: sweeps on the sweep split, DICE and baselines on the eval split."""

    sweeps: dict[str, pd.DataFrame]  # sweep name -> summary (column model; intervals) on the sweep split
    chosen: dict[str, EditSettings]  # model label -> the settings the sweeps chose
    per_case: pd.DataFrame  # eval split: model, method, lambda, id, type and the scores of every case
    cases: pd.DataFrame  # the eval-split cases (source, target, mask in `grids`)
    grids: dict[str, np.ndarray]
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # label -> method -> edits [N, 16, 16]

    def final(self) -> pd.DataFrame:
        """Return mean scores with 95 % intervals per model, method and edit type on the eval split (DICE at its
        chosen settings, the baselines with the same steps, guidance and seed)."""
        keep = self.per_case[self.per_case["method"] != "dice_sweep"]
        return summarize(keep, ["model", "method"], ci=True)

    def test_sweep(self) -> pd.DataFrame:
        """Return DICE's lambda sweep on the eval split (other settings as chosen on the sweep split)."""
        return summarize(self.per_case[self.per_case["method"] == "dice_sweep"], ["model", "lambda"], ci=True)

    def baselines(self) -> pd.DataFrame:
        """Return the baselines' summaries on the eval split (columns model, method, type, scores, intervals)."""
        final = self.final()
        return final[final["method"] != "dice"].reset_index(drop=True)

    def reports(self) -> dict[str, dict[str, float]]:
        """Return {model label: DICE's headline scores on the eval split} (reports/metrics/editing_<label>.json)."""
        final = self.final()
        return {m: headline(final[(final["model"] == m) & (final["method"] == "dice")]) for m in self.chosen}

    def settings(self, seed: int) -> pd.DataFrame:
        """Return the chosen settings of every model: columns setting and one column per model label."""
        tables = [settings_table(s, seed).set_index("setting")["value"].rename(m) for m, s in self.chosen.items()]
        return pd.concat(tables, axis=1).reset_index()


def ablations(models: dict[str, Any], sweep_data: tuple[pd.DataFrame, dict], eval_data: tuple[pd.DataFrame, dict],
              base: EditSettings, values: dict[str, list[Any]], seed: int = 0, progress: bool = False) -> Ablation:
    """Return notebook 03 for every model of `models` ({registry name: denoiser}).

    Per model, from `base` (guidance off for image_models.NO_GUIDANCE models, whose cfg_scale sweep is
    skipped), each sweep of SWEEPS runs its `values[name]` on the sweep split and keeps the best overall
    edit_score for the next sweep (the margin sweep runs with lai latents and changes the settings only
    when lai was chosen). Then, on the eval split, DICE's lambda sweep (`values["lambda"]`) at the chosen
    other settings and every baseline run on the same cases; "dice" is the sweep's point at the chosen
    lambda1. Nothing is chosen on the eval split.
    """
    sweeps: dict[str, list[pd.DataFrame]] = {name: [] for name, _ in SWEEPS}
    chosen, per_case, outputs = {}, [], {}
    for name, model in tqdm(models.items(), desc="models", disable=not progress, leave=False):
        lab = image_models.label(name)
        order = image_models.REGENERATION_ORDERS.get(name, REGENERATION_ORDER)
        s = replace(base, cfg_scale=image_models.guidance(name, base.cfg_scale))
        runner = EditRunner(model, *sweep_data, seed=seed, progress=progress, regeneration_order=order)
        for sweep_name, fld in SWEEPS:
            if sweep_name == "cfg_scale" and name in image_models.NO_GUIDANCE:
                continue
            start = replace(s, pseudo_inverse="lai") if sweep_name == "margin" else s
            df = sweep(runner, start, fld, values[sweep_name], label=sweep_name, ci=True)
            sweeps[sweep_name].append(df.assign(model=lab))
            if sweep_name != "margin" or s.pseudo_inverse == "lai":
                s = replace(s, **{fld: best_row(df, sweep_name)})
        chosen[lab] = s
        test = EditRunner(model, *eval_data, seed=seed, progress=progress, regeneration_order=order)
        lambdas = list(dict.fromkeys([*values["lambda"], s.lambda1]))
        edits = test.edit_many([replace(s, lambda1=v) for v in lambdas])  # one grid
        per_case += [test.score(x, model=lab, method="dice_sweep", **{"lambda": v}) for v, x in zip(lambdas, edits)]
        dice = edits[lambdas.index(s.lambda1)]
        per_case.append(test.score(dice, model=lab, method="dice", **{"lambda": s.lambda1}))
        base_out = test.baseline_outputs(BASELINES, s)
        per_case += [test.score(x, model=lab, method=b, **{"lambda": np.nan}) for b, x in zip(BASELINES, base_out)]
        side = sb.SIZE
        outputs[lab] = {m: x.reshape(-1, side, side) for m, x in zip(("dice", *BASELINES), (dice, *base_out))}
    sweeps_df = {k: pd.concat(v, ignore_index=True) for k, v in sweeps.items() if v}
    lead = ["model", "method", "lambda"]
    table = pd.concat(per_case, ignore_index=True)
    table = table[lead + [c for c in table if c not in lead]]
    return Ablation(sweeps_df, chosen, table, eval_data[0].reset_index(drop=True), eval_data[1], outputs)


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


def schedule_sweeps(models: dict[str, Any], data: tuple[pd.DataFrame, dict], base: EditSettings, schedules: list[str],
                    lambdas: list[float], lambda1_end: float = 1.0, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Return schedule_sweep (with 95 % intervals) for every model on the same cases, column `model` (its label);
    guidance off for image_models.NO_GUIDANCE models. Each model's sweep is one edit grid."""
    parts = []
    for name, model in tqdm(models.items(), desc="models", disable=not progress, leave=False):
        runner = EditRunner(model, *data, seed=seed, progress=progress)
        s = replace(base, cfg_scale=image_models.guidance(name, base.cfg_scale))
        parts.append(schedule_sweep(runner, s, schedules, lambdas, lambda1_end, ci=True).assign(model=image_models.label(name)))
    table = pd.concat(parts, ignore_index=True)
    return table[["model", *[c for c in table if c != "model"]]]


def schedule_report(table: pd.DataFrame) -> dict[str, Any]:
    """Return the best schedule (highest overall edit_score over schedules and start values) and its overall
    scores: {"schedule", "lambda1", exact_parse, preservation, edit_score} (one model's table)."""
    overall = table[table["type"] == "overall"]
    r = overall.loc[overall["edit_score"].idxmax()]
    return {"schedule": str(r["schedule"]), "lambda1": float(r["lambda1"]),
            **{k: round(float(r[k]), 4) for k in HEADLINE if k in r}}


def schedule_reports(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Return {model label: schedule_report} of a schedule_sweeps table."""
    return {m: schedule_report(part) for m, part in table.groupby("model", sort=False)}


def schedule_plot(table: pd.DataFrame) -> pd.DataFrame:
    """Return the overall edit_score per start value lambda1 (rows) and schedule (columns): the DVC plot
    reports/plots/lambda_schedules/<model>.csv, one line per schedule (one model's table)."""
    overall = table[table["type"] == "overall"]
    wide = overall.pivot(index="lambda1", columns="schedule", values="edit_score")
    return wide[list(dict.fromkeys(overall["schedule"]))].reset_index().rename_axis(columns=None)


def schedule_plots(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return {model label: schedule_plot} of a schedule_sweeps table."""
    return {m: schedule_plot(part) for m, part in table.groupby("model", sort=False)}
