"""Return ShapesBench editing results: DICE edits under settings, the baselines, and their exact scores.

`EditRunner` holds a model and a set of edit cases, inverts each source under its source prompt
(cached per inversion setting, so a lambda or injection sweep inverts once) and edits to the
target prompt. Scores per case: `edit_accuracy` (inside the edit mask, against the oracle
target) and `preservation` (outside it, against the source); `edit_score` is their harmonic
mean, the single number used to pick the best setting. Baselines:
- `lambda1_zero`: DICE from the same inversion with lambda1 = 0, lambda2 = 1 (noise only, no
  latents: SDEdit-like partial regeneration from x_tau);
- `inpainting_oracle_mask`: pixels outside the true edit mask clamped to the source, the inside
  regenerated under the target prompt (knows the answer's support: an upper reference);
- `regeneration`: a fresh sample for the target prompt (every token replaced).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import image_metrics as im
from .api import edit, invert
from .regeneration import regenerate
from .shapes_model import encode

BASELINES = ("lambda1_zero", "inpainting_oracle_mask", "regeneration")


@dataclass(frozen=True)
class EditSettings:
    """One DICE configuration: inversion settings, then editing settings."""

    method: str = "masked"  # "masked" (Alg. 1) or "multinomial" (Alg. 2)
    steps: int | None = 16  # inversion steps (None: 32 masked, the model's T multinomial)
    tau: float = 0.8  # start level: how much of the trajectory is re-generated
    pseudo_inverse: str = "lai"  # "onehot", "model" or "lai"
    cfg_scale: float | None = 3.0  # classifier-free guidance weight (None: off)
    noise: str = "mask"  # masked method's noise map: "mask" ([MASK]) or "uniform" (renoise)
    mask_schedule: str = "linear"  # masked method's noise levels
    margin: float = 1.0  # LAI margin
    lambda1: float = 0.7  # weight of the latents (the source's information)
    lambda2: float | None = 0.3  # weight of fresh Gumbel noise (None: 1 - lambda1 per step)
    injection: str = "add"  # "add", "variance_preserving" or "max"
    lambda_schedule: str = "uniform"  # "uniform", "linear", "exponential" or "mi"
    lambda1_end: float = 1.0  # lambda1 at the last step of non-uniform schedules
    seed: int = 0  # seeds inversion (seed) and editing (seed + 1)

    def inversion_key(self) -> tuple:
        """Return the fields that determine the inversion (editing fields excluded)."""
        return (self.method, self.steps, self.tau, self.pseudo_inverse, self.cfg_scale, self.noise,
                self.mask_schedule, self.margin, self.seed)

    def invert_kwargs(self) -> dict[str, Any]:
        """Return dicelib.invert's keyword arguments for these settings."""
        opts = {"mask_schedule": self.mask_schedule, "noise": self.noise} if self.method == "masked" else {}
        return {"method": self.method, "steps": self.steps, "tau": self.tau, "pseudo_inverse": self.pseudo_inverse,
                "cfg_scale": self.cfg_scale, "margin": self.margin, **opts}


def settings_from(params: dict[str, Any]) -> EditSettings:
    """Return EditSettings from a params.yaml-style dict (unknown keys ignored)."""
    names = {f.name for f in fields(EditSettings)}
    return EditSettings(**{k: v for k, v in params.items() if k in names})


class EditRunner:
    """Inverts and edits a fixed set of ShapesBench cases with one model, caching inversions."""

    def __init__(self, model: Any, cases: pd.DataFrame, grids: dict[str, np.ndarray], progress: bool = False):
        self.model, self.cases, self.progress = model, cases.reset_index(drop=True), progress
        n = len(self.cases)
        self.source = torch.from_numpy(grids["source"].reshape(n, -1).astype(np.int64))  # [N, D]
        self.target = grids["target"].reshape(n, -1)
        self.mask = grids["mask"].reshape(n, -1)
        length = model.config.prompt_len
        self.source_cond = encode(list(self.cases["source_prompt"]), length)  # [N, L]
        self.target_cond = encode(list(self.cases["target_prompt"]), length)
        self._inversions: dict[tuple, Any] = {}

    def inversion(self, s: EditSettings):
        """Return the (cached) inversion of every source under its source prompt."""
        key = s.inversion_key()
        if key not in self._inversions:
            gen = torch.Generator().manual_seed(s.seed)
            self._inversions[key] = invert(self.model, self.source, self.source_cond, generator=gen, **s.invert_kwargs())
        return self._inversions[key]

    def edit(self, s: EditSettings, cond: torch.Tensor | None = None) -> np.ndarray:
        """Return DICE edits [N, D] of every case under the target prompts (or `cond`)."""
        gen = torch.Generator().manual_seed(s.seed + 1)
        x = edit(self.model, self.inversion(s), self.target_cond if cond is None else cond, lambda1=s.lambda1,
                 lambda2=s.lambda2, injection=s.injection, lambda_schedule=s.lambda_schedule,
                 lambda1_end=s.lambda1_end, generator=gen)
        return x.cpu().numpy()

    def baseline(self, name: str, s: EditSettings) -> np.ndarray:
        """Return a baseline's outputs [N, D] with the steps, guidance and seed of `s`."""
        if name == "lambda1_zero":
            return self.edit(replace(s, lambda1=0.0, lambda2=1.0, lambda_schedule="uniform"))
        gen = torch.Generator().manual_seed(s.seed + 2)
        steps = s.steps or 32
        if name == "regeneration":
            out = regenerate(self.model, self.target_cond, steps, s.cfg_scale, generator=gen, noise=s.noise)
        elif name == "inpainting_oracle_mask":
            out = regenerate(self.model, self.target_cond, steps, s.cfg_scale, generator=gen, noise=s.noise,
                             source=self.source, keep=torch.from_numpy(~self.mask))
        else:
            raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
        return out.cpu().numpy()

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

    name "lambda" sets lambda1 = v and lambda2 = 1 - v (the paper's ablation convention).
    """
    rows = []
    for v in tqdm(values, desc=f"sweep {name}", disable=not runner.progress, leave=False):
        s = replace(base, lambda1=v, lambda2=1 - v) if name == "lambda" else replace(base, **{name: v})
        rows.append(runner.score(runner.edit(s), **{label or name: v}))
    return summarize(pd.concat(rows, ignore_index=True), [label or name])


def baselines(runner: EditRunner, s: EditSettings, names: tuple[str, ...] = BASELINES) -> pd.DataFrame:
    """Return the summary of each baseline (column `method`) run with the settings of `s`."""
    per_case = pd.concat([runner.score(runner.baseline(n, s), method=n) for n in names], ignore_index=True)
    return summarize(per_case, ["method"])


def best_row(summary: pd.DataFrame, column: str) -> Any:
    """Return the value of `column` with the highest overall edit_score in a sweep summary."""
    overall = summary[summary["type"] == "overall"]
    return overall.loc[overall["edit_score"].idxmax(), column]


def editing_report(dice: pd.DataFrame, base: pd.DataFrame, s: EditSettings) -> dict[str, Any]:
    """Return editing.json's content: per type and overall, DICE (with its settings) and each baseline."""
    out: dict[str, Any] = {}
    settings = {k: v for k, v in asdict(s).items()}
    for typ in dice["type"]:
        d = dice[dice["type"] == typ].iloc[0]
        entry = {"dice": {"edit_accuracy": round(float(d["edit_accuracy"]), 4),
                          "preservation": round(float(d["preservation"]), 4), "settings": settings}}
        for _, b in base[base["type"] == typ].iterrows():
            entry[b["method"]] = {"edit_accuracy": round(float(b["edit_accuracy"]), 4),
                                  "preservation": round(float(b["preservation"]), 4)}
        out[typ] = entry
    return out
