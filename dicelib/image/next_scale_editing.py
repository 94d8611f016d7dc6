"""Return ShapesBench next-scale results (notebook 06): VARIN's tables on the exact next-scale oracle, and VARIN
beside DICE's masked method, Regeneration and lambda1 = 0 on the same cases.

Every source image becomes its pyramid (`shapes_pyramid`), is inverted under its source prompt
(`dicelib.invert(..., method="next_scale")`, cached per pseudo-inverse and margin) and edited to
the target prompt; the finest edited map is the edited image, scored as notebook 03 scores
(`editing.EditRunner.score`: edit accuracy inside the mask against the oracle target, preservation
outside it, their harmonic mean, exact parse as the target prompt with sizes) with bootstrap 95 %
intervals over cases (`editing.summarize`). Methods:
- `varin`: VARIN Alg. 3 at the settings chosen on the sweep split;
- `lambda1_zero`: the same edit without latents (lambda1 = 0, lambda2 = 1, same start scale);
- `regeneration`: VARIN Alg. 4, the first `start_scale` source maps kept, the rest sampled under
  the target (its start scale chosen on the sweep split by the same rule);
- `target_only`: VARIN Alg. 6, inverted and edited under the target prompt;
- `dice_masked`: DICE's masked method (Alg. 1, [MASK] noise) with the masked oracle on the same
  cases, its lambda1 chosen on the sweep split.
Choice rule (sweep split only, never the eval split): the highest exact-parse rate among the
settings whose preservation is at least `min_preservation`, ties to the higher edit score; the
highest edit score if none qualifies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..core.api import edit_grid, invert
from ..core.next_scale_baselines import regenerate_next_scale, target_only_edit
from ..core.settings import EditSettings
from ..errors import DiceError, integer, list_of, number
from ..io import LAMBDA, SHARED_RULES, stage_params
from . import editing
from . import metrics as im
from .benchmark_build import PER_TYPE, SPLIT
from .shapes_model import encode
from .shapes_oracle import ShapesOracle
from .shapes_oracle_next_scale import ShapesNextScaleOracle

METHODS = ("varin", "dice_masked", "regeneration", "lambda1_zero")  # the comparison, in table order
PARAMS = stage_params(  # notebook 06
    "next_scale", "seed", sweep_split=SPLIT, sweep_per_type=PER_TYPE, eval_split=SPLIT, eval_per_type=PER_TYPE,
    pseudo_inverses=list_of(SHARED_RULES["pseudo_inverse"]), lambdas=list_of(LAMBDA),
    margins=list_of(SHARED_RULES["margin"]), start_scales=list_of(integer(0)), min_preservation=number(0, 1),
    masked_steps=SHARED_RULES["steps"], masked_tau=SHARED_RULES["tau"], masked_lambdas=list_of(LAMBDA),
    example=integer(0))


def choose(summary: pd.DataFrame, columns: list[str], min_preservation: float) -> dict[str, Any]:
    """Return the values of `columns` of the chosen row of a sweep summary (the module's choice rule)."""
    overall = summary[summary["type"] == "overall"]
    ok = overall[overall["preservation"] >= min_preservation]
    pool = ok if len(ok) else overall
    row = pool.sort_values(["exact_parse", "edit_score"], ascending=False, kind="stable").iloc[0] if len(ok) else \
        pool.loc[pool["edit_score"].idxmax()]
    return {c: (row[c].item() if hasattr(row[c], "item") else row[c]) for c in columns}


class NextScaleRunner:
    """Inverts and edits a fixed set of ShapesBench cases with the next-scale oracle (inversions cached)."""

    def __init__(self, model: ShapesNextScaleOracle, cases: pd.DataFrame, grids: dict[str, np.ndarray], seed: int = 0,
                 progress: bool = False):
        self.model, self.seed, self.progress = model, seed, progress
        self.scorer = editing.EditRunner(model.masked, cases, grids, seed=seed, progress=progress)  # scores, masked DICE
        self.cases = self.scorer.cases
        self.source = model.pyramid(self.scorer.source)  # list of S maps [N, n_k]
        length = model.config.prompt_len
        self.source_cond = encode(list(self.cases["source_prompt"]), length)
        self.target_cond = encode(list(self.cases["target_prompt"]), length)
        self._inversions: dict[tuple[str, float], Any] = {}
        self.seconds: dict[str, float] = {}  # wall time per part (inversion, edits, ...)

    def _timed(self, part: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start
        return out

    def inversion(self, pseudo_inverse: str, margin: float = 1.0) -> Any:
        """Return the (cached) next-scale inversion of every source under its source prompt."""
        key = (pseudo_inverse, float(margin))
        if key not in self._inversions:
            self._inversions[key] = self._timed("invert", invert, self.model, self.source, self.source_cond,
                                                method="next_scale", pseudo_inverse=pseudo_inverse, margin=margin,
                                                generator=torch.Generator().manual_seed(self.seed))
        return self._inversions[key]

    def edits(self, pseudo_inverse: str, margin: float, settings: list[dict[str, Any]], cond: Any = None) -> list[list[torch.Tensor]]:
        """Return VARIN edits (lists of maps) for each setting dict (lambda1, lambda2, start_scale): one edit grid."""
        inv = self.inversion(pseudo_inverse, margin)
        cond = self.target_cond if cond is None else cond
        return self._timed("edit", edit_grid, self.model, inv, settings, conds=[cond] * len(settings),
                           generators=[torch.Generator().manual_seed(self.seed + 1) for _ in settings])

    def reconstruction(self, pseudo_inverse: str, margin: float = 1.0) -> pd.DataFrame:
        """Return per case whether source prompt, lambda1 = 1, lambda2 = 0 gives back every map (and the pixel share)."""
        maps = self.edits(pseudo_inverse, margin, [dict(lambda1=1.0, lambda2=0.0)], self.source_cond)[0]
        exact = torch.stack([(a == b).all(1) for a, b in zip(maps, self.source)]).all(0).numpy()
        acc = im.token_accuracy(maps[-1].numpy(), self.source[-1].numpy())
        return pd.DataFrame({"id": self.cases["id"], "type": self.cases["type"], "pseudo_inverse": pseudo_inverse,
                             "maps_exact": exact.astype(float), "token_accuracy": acc})

    def regeneration(self, start_scale: int) -> np.ndarray:
        """Return Regeneration (VARIN Alg. 4) images [N, D] keeping the first `start_scale` source maps."""
        maps = self._timed("regeneration", regenerate_next_scale, self.model, self.source, self.target_cond, start_scale,
                           generator=torch.Generator().manual_seed(self.seed + 2))
        return maps[-1].numpy()

    def target_only(self, pseudo_inverse: str, margin: float, lambda1: float, start_scale: int) -> np.ndarray:
        """Return target-only VARIN (Alg. 6) images [N, D]: inverted and edited under the target prompt."""
        maps = self._timed("target_only", target_only_edit, self.model, self.source, self.target_cond, lambda1=lambda1,
                           start_scale=start_scale, pseudo_inverse=pseudo_inverse, margin=margin,
                           generator=torch.Generator().manual_seed(self.seed + 1))
        return maps[-1].numpy()

    def dice_masked(self, settings: list[EditSettings]) -> list[np.ndarray]:
        """Return DICE masked-method edits [N, D] (masked oracle) for each of `settings` (one inversion, one grid)."""
        return self._timed("dice_masked", self.scorer.edit_many, settings)

    def score(self, images: np.ndarray, **columns: Any) -> pd.DataFrame:
        """Return per-case scores (notebook 03's: edit_accuracy, preservation, edit_score, exact_parse) + `columns`."""
        return self.scorer.score(np.asarray(images), **columns)


@dataclass
class NextScaleStudy:
    """Notebook 06's results: the sweep-split tables, the chosen settings, the eval-split tables and outputs."""

    reconstruction: pd.DataFrame  # Table 2: per pseudo-inverse, maps exact and token accuracy (eval split)
    sweep: pd.DataFrame  # Table 4 on the sweep split: pseudo_inverse x margin x lambda1 x start_scale
    regeneration_sweep: pd.DataFrame  # Table 3 on the sweep split: Regeneration by start scale
    masked_sweep: pd.DataFrame  # DICE masked: lambda1 on the sweep split
    chosen: dict[str, Any]  # the settings chosen on the sweep split
    per_case: pd.DataFrame  # eval split: method and scores per case (comparison, tables 3 and 5)
    regeneration_by_start: pd.DataFrame  # Table 3 on the eval split (with intervals)
    lambda_table: pd.DataFrame  # Table 4 on the eval split: lambda1 x margin at the chosen start scale
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # method -> eval-split images [N, D]
    seconds: dict[str, float] = field(default_factory=dict)

    def final(self) -> pd.DataFrame:
        """Return the comparison on the eval split: mean scores with 95 % intervals per method and edit type."""
        keep = self.per_case[self.per_case["method"].isin(METHODS)]
        return editing.summarize(keep.assign(model="oracle"), ["model", "method"], ci=True)

    def target_only_table(self) -> pd.DataFrame:
        """Return Table 5: VARIN (source-prompt inversion) vs target-only VARIN on the eval split, with intervals."""
        keep = self.per_case[self.per_case["method"].isin(["varin", "target_only"])]
        return editing.summarize(keep, ["method"], ci=True)

    def report(self) -> dict[str, float]:
        """Return VARIN's overall headline scores on the eval split (reports/metrics/editing_next_scale.json)."""
        final = self.final()
        return editing.headline(final[final["method"] == "varin"])

    def overall(self) -> pd.DataFrame:
        """Return the comparison's overall rows: method x (edit_accuracy, preservation, exact_parse, intervals)."""
        final = self.final()
        cols = [c for s in ("exact_parse", "preservation", "edit_accuracy") for c in (s, f"{s}_lo", f"{s}_hi")]
        return final[final["type"] == "overall"].set_index("method")[cols]


def _grid(pseudo_inverses: list[str], margins: list[float], lambdas: list[float], start_scales: list[int]) -> list[dict]:
    """Return the VARIN sweep points: margins only for lai (onehot has none)."""
    return [dict(pseudo_inverse=p, margin=float(m), lambda1=float(lam), start_scale=int(s))
            for p in pseudo_inverses for m in (margins if p == "lai" else [1.0]) for lam in lambdas for s in start_scales]


def _varin_sweep(runner: NextScaleRunner, points: list[dict]) -> pd.DataFrame:
    """Return per-case scores of VARIN at every sweep point (one edit grid per inversion)."""
    rows = []
    for key in dict.fromkeys((p["pseudo_inverse"], p["margin"]) for p in points):
        part = [p for p in points if (p["pseudo_inverse"], p["margin"]) == key]
        edits = runner.edits(*key, [dict(lambda1=p["lambda1"], start_scale=p["start_scale"]) for p in part])
        rows += [runner.score(maps[-1].numpy(), **p) for p, maps in zip(part, edits)]
    return pd.concat(rows, ignore_index=True)


def study(sweep_data: tuple[pd.DataFrame, dict], eval_data: tuple[pd.DataFrame, dict], pseudo_inverses: list[str],
          lambdas: list[float], margins: list[float], start_scales: list[int], min_preservation: float = 0.9,
          masked: EditSettings | None = None, masked_lambdas: list[float] = (0.7,), seed: int = 0,
          progress: bool = False) -> NextScaleStudy:
    """Return notebook 06: every choice on the sweep split, then every table and the comparison on the eval split."""
    if not pseudo_inverses or not lambdas or not start_scales:
        raise DiceError("pseudo_inverses, lambdas and start_scales must be non-empty lists")
    model = ShapesNextScaleOracle()
    bad = [s for s in start_scales if not 0 <= s < len(model.scales)]
    if bad:
        raise DiceError(f"start_scales {bad} outside 0..{len(model.scales) - 1} (the pyramid's {len(model.scales)} scales)")
    masked = masked or EditSettings(method="masked", noise="mask", steps=8, tau=0.8, pseudo_inverse="lai")
    steps = tqdm(total=4, desc="next-scale study", disable=not progress)
    # --- sweep split: choose VARIN's, Regeneration's and masked DICE's settings ---
    val = NextScaleRunner(model, *sweep_data, seed=seed)
    cols = ["pseudo_inverse", "margin", "lambda1", "start_scale"]
    sweep = editing.summarize(_varin_sweep(val, _grid(pseudo_inverses, margins, lambdas, start_scales)), cols, ci=True,
                              seed=seed)
    chosen = choose(sweep, cols, min_preservation)
    regen_val = pd.concat([val.score(val.regeneration(s), start_scale=s) for s in start_scales], ignore_index=True)
    regen_sweep = editing.summarize(regen_val, ["start_scale"], ci=True, seed=seed)
    chosen["regeneration_start_scale"] = choose(regen_sweep, ["start_scale"], min_preservation)["start_scale"]
    masked_runs = [replace(masked, lambda1=float(v)) for v in masked_lambdas]
    masked_val = pd.concat([val.score(x, lambda1=v) for v, x in zip(masked_lambdas, val.dice_masked(masked_runs))],
                           ignore_index=True)
    masked_sweep = editing.summarize(masked_val, ["lambda1"], ci=True, seed=seed)
    chosen["masked_lambda1"] = choose(masked_sweep, ["lambda1"], min_preservation)["lambda1"]
    steps.update()
    # --- eval split: tables 2-5 and the comparison at the chosen settings ---
    test = NextScaleRunner(model, *eval_data, seed=seed)
    recon = pd.concat([test.reconstruction(p, chosen["margin"] if p == "lai" else 1.0) for p in ("onehot", "lai")],
                      ignore_index=True)
    steps.update()
    lam_points = _grid(["lai"], margins, lambdas, [chosen["start_scale"]])
    lam_cases = _varin_sweep(test, lam_points)
    lambda_table = editing.summarize(lam_cases, ["margin", "lambda1"], ci=True, seed=seed)
    pick = (lam_cases["margin"] == chosen["margin"]) & (lam_cases["lambda1"] == chosen["lambda1"])
    if chosen["pseudo_inverse"] == "lai" and pick.any():
        varin = None  # the chosen point is in the eval-split lambda table already
        varin_scores = lam_cases[pick].drop(columns=["pseudo_inverse", "margin", "lambda1", "start_scale"])
    else:
        varin = test.edits(chosen["pseudo_inverse"], chosen["margin"],
                           [dict(lambda1=chosen["lambda1"], start_scale=chosen["start_scale"])])[0][-1].numpy()
        varin_scores = test.score(varin)
    if varin is None:
        varin = test.edits(chosen["pseudo_inverse"], chosen["margin"],
                           [dict(lambda1=chosen["lambda1"], start_scale=chosen["start_scale"])])[0][-1].numpy()
    zero = test.edits(chosen["pseudo_inverse"], chosen["margin"],
                      [dict(lambda1=0.0, lambda2=1.0, start_scale=chosen["start_scale"])])[0][-1].numpy()
    regen_test = {s: test.regeneration(s) for s in start_scales}
    regen_by_start = editing.summarize(pd.concat([test.score(x, start_scale=s) for s, x in regen_test.items()],
                                                 ignore_index=True), ["start_scale"], ci=True, seed=seed)
    steps.update()
    target_only = test.target_only(chosen["pseudo_inverse"], chosen["margin"], chosen["lambda1"], chosen["start_scale"])
    dice = test.dice_masked([replace(masked, lambda1=float(chosen["masked_lambda1"]))])[0]
    outputs = {"varin": varin, "dice_masked": dice, "regeneration": regen_test[chosen["regeneration_start_scale"]],
               "lambda1_zero": zero, "target_only": target_only}
    per_case = pd.concat([varin_scores.assign(method="varin")] +
                         [test.score(x, method=m) for m, x in outputs.items() if m != "varin"], ignore_index=True)
    steps.update()
    steps.close()
    seconds = {f"sweep_{k}": round(v, 2) for k, v in val.seconds.items()}
    seconds |= {f"eval_{k}": round(v, 2) for k, v in test.seconds.items()}
    return NextScaleStudy(recon, sweep, regen_sweep, masked_sweep, chosen, per_case, regen_by_start, lambda_table,
                          outputs, seconds)


def reconstruction_table(recon: pd.DataFrame) -> pd.DataFrame:
    """Return Table 2: per pseudo-inverse, the share of cases with every map reproduced and the pixel accuracy."""
    return recon.groupby("pseudo_inverse", sort=False)[["maps_exact", "token_accuracy"]].mean().reset_index()


def chosen_table(chosen: dict[str, Any], seed: int) -> pd.DataFrame:
    """Return the settings chosen on the sweep split, one row each (reports/tables/next_scale_settings.csv)."""
    return pd.DataFrame([{"setting": k, "value": str(v)} for k, v in {**chosen, "seed": seed}.items()])


def example(model: ShapesNextScaleOracle, data: tuple[pd.DataFrame, dict], row: int, lambda1: float = 0.8,
            start_scales: tuple[int, ...] = (0, 1, 2), seed: int = 0) -> dict[str, Any]:
    """Return one case for teaching: its source and target pyramids, LAI and onehot latents, edits by start scale."""
    cases, grids = data
    if not 0 <= row < len(cases):
        raise DiceError(f"example row {row} outside 0..{len(cases) - 1}")
    case = cases.iloc[row]
    src = model.pyramid(grids["source"][row].reshape(1, -1))
    tgt = model.pyramid(grids["target"][row].reshape(1, -1))
    cond = encode([case["source_prompt"]], model.config.prompt_len)
    target = encode([case["target_prompt"]], model.config.prompt_len)
    invs = {p: invert(model, src, cond, method="next_scale", pseudo_inverse=p, generator=torch.Generator().manual_seed(seed))
            for p in ("onehot", "lai")}
    edits = edit_grid(model, invs["lai"], [dict(lambda1=lambda1, start_scale=s) for s in start_scales],
                      conds=[target] * len(start_scales),
                      generators=[torch.Generator().manual_seed(seed + 1) for _ in start_scales])
    return {"case": case, "source": src, "target": tgt, "inversions": invs, "lambda1": lambda1,
            "edits": dict(zip(start_scales, edits))}
