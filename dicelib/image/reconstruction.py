"""Return ShapesBench reconstruction results (Table 1 analog): both methods x pseudo-inverses vs regeneration.

Each source is inverted under its source prompt (tau = 1) and regenerated with its own prompt,
lambda1 = 1, lambda2 = 0 (`dicelib.reconstruct`). `onehot` and `lai` must give the source back
token for token; `model` is exact only where the model's clean prediction argmax D(x0, 0, c)
already equals x0 (its `mismatch_rate` is reported beside it). The regeneration baseline samples
the source prompt from full noise with no latents. Scores per case: token accuracy, and PSNR,
MSE and SSIM of the palette renders.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import metrics as im
from . import models as image_models
from . import shapesbench as sb
from ..core.api import invert, reconstruct
from ..core.regeneration import regenerate
from ..errors import list_of
from ..io import stage_params
from .benchmark_build import PER_TYPE, SPLIT
from .shapes_model import encode

METHODS = ("masked", "multinomial")
PSEUDO_INVERSES = ("onehot", "model", "lai")
PARAMS = stage_params("reconstruction", "seed steps cfg_scale noise margin", split=SPLIT, per_type=PER_TYPE,
                      models=list_of(image_models.MODEL))  # notebook 02
FIGURE_COLUMNS = ("masked/onehot", "masked/model", "multinomial/lai", "regeneration")  # 02-reconstruction.png, per model


def _scores(pred: np.ndarray, source: np.ndarray, cases: pd.DataFrame, **columns: Any) -> pd.DataFrame:
    rgb_pred, rgb_src = sb.to_rgb(pred.reshape(-1, sb.SIZE, sb.SIZE)), sb.to_rgb(source.reshape(-1, sb.SIZE, sb.SIZE))
    acc = im.token_accuracy(pred, source)
    return pd.DataFrame({"id": cases["id"], "type": cases["type"], **columns, "token_accuracy": acc,
                         "exact": acc == 1.0, "psnr": im.psnr(rgb_pred, rgb_src), "mse": im.mse(rgb_pred, rgb_src),
                         "ssim": im.ssim(rgb_pred, rgb_src)})


def reconstruction(model: Any, cases: pd.DataFrame, grids: dict[str, np.ndarray], steps: int = 16,
                   cfg_scale: float | None = 3.0, noise: str = "mask", margin: float = 1.0, seed: int = 0,
                   methods: tuple[str, ...] = METHODS, pseudo_inverses: tuple[str, ...] = PSEUDO_INVERSES,
                   progress: bool = False) -> tuple[pd.DataFrame, dict[str, float], dict[str, np.ndarray]]:
    """Return (per-case scores with columns method / pseudo_inverse, {"<method>/model": mismatch_rate},
    {"<method>/<pseudo_inverse>" or "regeneration": outputs [N, 16, 16]}).

    The masked method runs `steps` steps with `noise`; the multinomial method runs the model's
    transition schedule (its T). Regeneration rows have method "regeneration".
    """
    source = torch.from_numpy(grids["source"].reshape(len(cases), -1).astype(np.int64))  # [N, D]
    cond = encode(list(cases["source_prompt"]), model.config.prompt_len)
    rows, mismatch, outputs = [], {}, {}
    runs = [(m, p) for m in methods for p in pseudo_inverses]
    for method, pinv in tqdm(runs, desc="reconstruct", disable=not progress, leave=False):
        opts = {"steps": steps, "noise": noise} if method == "masked" else {}
        inv = invert(model, source, cond, method=method, pseudo_inverse=pinv, cfg_scale=cfg_scale, margin=margin,
                     generator=torch.Generator().manual_seed(seed), **opts)
        out = reconstruct(model, inv).cpu().numpy()
        rows.append(_scores(out, source.numpy(), cases, method=method, pseudo_inverse=pinv))
        outputs[f"{method}/{pinv}"] = out.reshape(-1, sb.SIZE, sb.SIZE)
        if inv.mismatch_rate is not None:
            mismatch[f"{method}/{pinv}"] = inv.mismatch_rate
    regen = regenerate(model, cond, steps, cfg_scale, noise=noise, generator=torch.Generator().manual_seed(seed + 2))
    rows.append(_scores(regen.cpu().numpy(), source.numpy(), cases, method="regeneration", pseudo_inverse="none"))
    outputs["regeneration"] = regen.cpu().numpy().reshape(-1, sb.SIZE, sb.SIZE)
    return pd.concat(rows, ignore_index=True), mismatch, outputs


def reconstructions(models: dict[str, Any], cases: pd.DataFrame, grids: dict[str, np.ndarray], steps: int = 16,
                    cfg_scale: float | None = None, noise: str = "mask", margin: float = 1.0, seed: int = 0,
                    progress: bool = False) -> tuple[pd.DataFrame, dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
    """Return `reconstruction` for every model of `models` ({registry name: denoiser}) on the same cases:
    (per-case scores with a `model` column (its label), {label: mismatch rates}, {label: outputs});
    guidance off for image_models.NO_GUIDANCE models."""
    rows, mismatch, outputs = [], {}, {}
    for name, model in models.items():
        lab = image_models.label(name)
        per_case, mismatch[lab], outputs[lab] = reconstruction(
            model, cases, grids, steps=steps, cfg_scale=image_models.guidance(name, cfg_scale), noise=noise,
            margin=margin, seed=seed, progress=progress)
        rows.append(per_case.assign(model=lab))
    table = pd.concat(rows, ignore_index=True)
    return table[["model", *[c for c in table if c != "model"]]], mismatch, outputs


def summary_table(per_case: pd.DataFrame, mismatch: dict[str, Any] | None = None) -> pd.DataFrame:
    """Return mean scores per ([model,] method, pseudo_inverse), with the fraction of exact reconstructions and,
    where given, the `model` pseudo-inverse's mismatch rate ({"<method>/model": rate}, or per model label
    {label: {...}} for a table with a `model` column) (reports/tables/reconstruction.csv)."""
    cols = ["token_accuracy", "exact", "psnr", "mse", "ssim"]
    keys = [k for k in ("model", "method", "pseudo_inverse") if k in per_case]
    groups = per_case.groupby(keys, sort=False)
    out = groups[cols].mean().reset_index()
    out["min_token_accuracy"] = groups["token_accuracy"].min().to_numpy()
    if mismatch is not None:
        per_model = "model" in out
        out["mismatch_rate"] = [(mismatch.get(r["model"], {}) if per_model else mismatch).get(
            f"{r['method']}/{r['pseudo_inverse']}", np.nan) for _, r in out.iterrows()]
    return out.rename(columns={"exact": "exact_fraction"})


def reconstruction_report(per_case: pd.DataFrame) -> dict[str, float | None]:
    """Return reports/metrics/reconstruction.json: `exact`, the fraction of reconstructions with the
    `onehot` and `lai` pseudo-inverses (both methods) that give the source back token for token
    (1.0: the invariant holds). Every method's scores, the `model` pseudo-inverse's included: summary_table.
    """
    exact = per_case[per_case["pseudo_inverse"].isin(["onehot", "lai"])]["exact"]
    return {"exact": round(float(exact.mean()), 6) if len(exact) else None}


def reconstruction_reports(per_case: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Return {model label: reconstruction_report} (reports/metrics/reconstruction_<label>.json)."""
    return {m: reconstruction_report(part) for m, part in per_case.groupby("model", sort=False)}
