"""Return the PIE-Bench experiment (paper Tables 1-3) for one image model: per-case metrics and the tables.

For each case: x0 = the model's tokens of the image; DICE inverts x0 under the source prompt,
then (Table 1) reconstructs with the source prompt (lambda1 = 1, lambda2 = 0) and (Tables 2, 3)
edits under the target prompt. The baseline "masked regeneration" (the paper's inpainting row)
re-generates from the same noised start without latents (lambda1 = 0, lambda2 = 1). Metrics:
PSNR / token accuracy (Table 1); DINO structure distance and CLIP similarity, whole image and
edited region (Table 2); PSNR, LPIPS, MSE, SSIM outside the edit mask (Table 3), printed as the
paper does (LPIPS x10^3, MSE x10^4, SSIM x10^2, structure x10^3). Metrics whose weights are
missing are written as absent (empty in CSV, "absent" in Markdown, null + reason in JSON).

    python -m dicelib.piebench.experiment --data data/PIE-Bench --model amused/amused-256 --out results/
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .metrics import PerceptualMetrics, scaled
from ..core.protocol import model_device
from ..core.settings import EditSettings
from .loader import PieCase, load_piebench
from ..errors import DiceError, check_device
from ..io import atomic_write, jsonable
from ..sweep import add_engine_arguments, check_folder, file_fingerprint, merge, run_sweep, summary_line, unit_seed

PIXEL_SCALES = {"mse": 1e4, "ssim": 1e2, "psnr": 1.0}  # SPEC §6
METHODS = ("DICE", "masked regeneration")


@dataclass(frozen=True)
class Settings:
    """Inversion/editing settings; None = the model's registry settings (`ModelSpec.settings`)."""

    steps: int | None = None
    tau: float | None = None
    cfg: float | None = None
    lambda1: float | None = None
    lambda2: float | None = None  # None: the model's (1 - lambda1 unless it says otherwise)
    pseudo_inverse: str | None = None
    seed: int = 0

    def resolve(self, model_settings: EditSettings) -> EditSettings:
        """Return the model's settings with every value given here in its place (cfg 1 = no guidance)."""
        return model_settings.with_given(steps=self.steps, tau=self.tau, cfg_scale=self.cfg, lambda1=self.lambda1,
                                         lambda2=self.lambda2, pseudo_inverse=self.pseudo_inverse)


def pixel_metrics(a: torch.Tensor, b: torch.Tensor, mask: np.ndarray | None = None) -> dict[str, float]:
    """Return PSNR, MSE, SSIM of images [3, H, W] in [0, 1]; with `mask` [H, W] (True = edited) only outside it."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    x = a.detach().float().cpu().permute(1, 2, 0).numpy().astype(np.float64)
    y = b.detach().float().cpu().permute(1, 2, 0).numpy().astype(np.float64)
    if mask is not None:  # PIE-Bench blacks out the edited region in both images
        keep = (~np.asarray(mask, dtype=bool))[..., None]
        x, y = x * keep, y * keep
    mse = float(np.mean((x - y) ** 2))
    psnr = math.inf if mse == 0 else float(peak_signal_noise_ratio(x, y, data_range=1.0))
    win = min(7, min(x.shape[:2]) - (1 - min(x.shape[:2]) % 2))  # odd window no larger than the image
    ssim = float(structural_similarity(x, y, data_range=1.0, channel_axis=-1, win_size=max(win, 3)))
    return {"psnr": psnr, "mse": mse, "ssim": ssim}


def _mask_at(case: PieCase, size: int) -> np.ndarray:
    """Return the case's edit mask resized (nearest) to size x size."""
    from PIL import Image

    mask = case.mask()
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)) > 127


INVERSION_FIELDS = ("steps", "tau", "cfg", "pseudo_inverse")  # Settings fields that change the inversion


def _label(point: dict[str, Any], names: Sequence[str] | None = None) -> str:
    """Return 'lambda1=0.5, tau=0.8' for a grid point's overrides (only `names` if given)."""
    return ", ".join(f"{k}={v}" for k, v in point.items() if names is None or k in names)


def run_case(model: Any, spec: Any, case: PieCase, settings: Settings | Sequence[Settings], perceptual: PerceptualMetrics,
             seed: int | None = None, labels: Sequence[str] | None = None, regeneration_label: str = "") -> list[dict]:
    """Return the case's rows (unscaled metrics): DICE per setting, then masked regeneration.

    `settings` may be a grid of settings that share one inversion (same steps, tau, cfg,
    pseudo-inverse): the case is inverted once and every edit runs in one edit grid. `seed` seeds
    the inversion (seed), the reconstructions (seed + 1) and the edits (seed + 2); default: the
    settings' seed. `labels` name each setting in the method column ("DICE (<label>)").
    """
    import dicelib

    points = [settings] if isinstance(settings, Settings) else list(settings)
    resolved = [p.resolve(spec.settings) for p in points]
    if len({s.inversion() for s in resolved}) != 1:
        raise DiceError("the settings of one PIE-Bench unit must share an inversion (steps, tau, cfg, pseudo_inverse)")
    seed = points[0].seed if seed is None else int(seed)
    image = case.image(model.image_size)  # [1, 3, S, S]
    mask = _mask_at(case, model.image_size)
    x0 = model.encode_image(image)
    src, tgt = model.encode_prompt([case.source_prompt]), model.encode_prompt([case.target_prompt])
    device = model_device(model)
    gen = lambda offset: torch.Generator(device=device).manual_seed(seed + offset)  # noqa: E731
    inv = dicelib.invert(model, x0, src, generator=gen(0), **resolved[0].invert_kwargs())
    # one edit grid: the two reconstructions (DICE: lambda 1/0, the same for every setting; regeneration:
    # lambda 0/1), regeneration's edit, then each setting's DICE edit; each as its lone `edit` call
    grid = [dict(cond=src, lambda1=1.0, lambda2=0.0), dict(cond=src, lambda1=0.0, lambda2=1.0),
            dict(cond=tgt, lambda1=0.0, lambda2=1.0)] + [dict(cond=tgt, lambda1=s.lambda1, lambda2=s.lambda2)
                                                           for s in resolved]
    out = dicelib.edit_grid(model, inv, grid, generators=[gen(1), gen(1), gen(2)] + [gen(2) for _ in resolved])
    names = ["DICE" if labels is None else f"DICE ({label})" for label in (labels or [None])]
    regeneration = "masked regeneration" + (f" ({regeneration_label})" if regeneration_label else "")
    runs = [(name, out[0], edited) for name, edited in zip(names, out[3:])] + [(regeneration, out[1], out[2])]
    x0_img = model.decode(x0).cpu()[0]
    rows = []
    for method, recon, edited in runs:
        recon_img, edit_img = model.decode(recon).cpu(), model.decode(edited).cpu()
        row = {"key": case.key, "edit_type": case.edit_type_name, "method": method,
               "token_accuracy": float((recon == x0).float().mean()),
               "recon_psnr": pixel_metrics(image[0], recon_img[0])["psnr"],
               "recon_psnr_vq": pixel_metrics(x0_img, recon_img[0])["psnr"]}
        row.update({f"bg_{k}": v for k, v in pixel_metrics(image[0], edit_img[0], mask).items()})
        m = torch.from_numpy(mask)[None]
        extra = perceptual.compute(image, edit_img, [case.target_prompt], m)
        row.update({k if k != "lpips" else "bg_lpips": (None if v is None else v[0]) for k, v in extra.items()})
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "absent"
    return "inf" if isinstance(v, float) and math.isinf(v) else f"{v:.2f}"


TABLES = {  # name -> (column label, per-case field, scale name)
    "table1_reconstruction": [("PSNR (pixels)", "recon_psnr", "psnr"), ("PSNR (vs VQ tokens)", "recon_psnr_vq", "psnr"),
                              ("token accuracy %", "token_accuracy", "percent")],
    "table2_editing": [("structure x1e3", "structure", "structure"), ("CLIP whole", "clip_whole", "clip_whole"),
                       ("CLIP edited", "clip_edited", "clip_edited")],
    "table3_background": [("PSNR", "bg_psnr", "psnr"), ("LPIPS x1e3", "bg_lpips", "lpips"),
                          ("MSE x1e4", "bg_mse", "mse"), ("SSIM x1e2", "bg_ssim", "ssim")],
}


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None  # absent (no weights), never 0
    return float(np.mean(vals)) if all(math.isfinite(v) for v in vals) else math.inf


def _scale(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if name == "percent":
        return 100 * value
    return value * PIXEL_SCALES[name] if name in PIXEL_SCALES else scaled(name, value)


def tables(rows: list[dict], model_name: str) -> dict[str, list[dict]]:
    """Return the paper-layout tables (rows = methods, printed scales) from per-case rows."""
    out = {}
    methods = list(dict.fromkeys(r["method"] for r in rows)) or list(METHODS)  # DICE (per setting), regeneration
    for name, cols in TABLES.items():
        out[name] = [{"method": f"{method} + {model_name}",
                      **{label: _scale(scale, _mean([r[field] for r in rows if r["method"] == method]))
                         for label, field, scale in cols}} for method in methods]
    types = sorted({r["edit_type"] for r in rows})
    dice = [m for m in methods if m.startswith("DICE")]
    out["dice_by_edit_type"] = [{**({"method": m} if len(dice) > 1 else {}), "edit type": t,
                                 **{label: _scale(scale, _mean([r[field] for r in rows
                                    if r["method"] == m and r["edit_type"] == t]))
                                    for label, field, scale in TABLES["table2_editing"] + TABLES["table3_background"]}}
                                for m in dice for t in types]
    return out


def write_outputs(out: Path, rows: list[dict], model_name: str, settings: Settings, absent: dict[str, str],
                  grid: Sequence[dict] | None = None) -> dict:
    """Write per-case CSV, each table as CSV + Markdown, and metrics.json under `out`; return the metrics."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "per_case.csv", lambda f: pd.DataFrame(rows).to_csv(f, index=False))
    result = tables(rows, model_name)
    for name, table in result.items():
        df = pd.DataFrame(table)
        atomic_write(out / f"{name}.csv", lambda f, df=df: df.to_csv(f, index=False))
        shown = df.map(lambda v: _fmt(v) if not isinstance(v, str) else v)
        atomic_write(out / f"{name}.md", lambda f, s=shown: f.write(s.to_markdown(index=False) + "\n"))
    metrics = {"model": model_name, "cases": len({r["key"] for r in rows}), "settings": asdict(settings),
               **({"grid": list(grid)} if grid is not None and len(grid) > 1 else {}), "absent": absent, **{name: table for name, table in result.items() if name.startswith("table")}}
    # inf (exact reconstruction) is written as the string "inf": JSON has no infinity and null means absent
    metrics = json.loads(json.dumps(metrics, default=str).replace("Infinity", '"inf"'))
    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(jsonable(metrics), indent=2) + "\n"))
    return metrics


def run(model: Any, spec: Any, cases: list[PieCase], settings: Settings, perceptual: PerceptualMetrics,
        out: Path, progress: bool = True) -> dict:
    """Return the metrics dict after running every case here and writing the outputs under `out`.

    Each case's generators are seeded from the settings' seed and its key (`dicelib.sweep.unit_seed`),
    as in `PieBenchSweep`, so a sweep of the same cases writes the same bytes.
    """
    rows = [row for case in tqdm(cases, desc="PIE-Bench", disable=not progress) for row in
            run_case(model, spec, case, settings, perceptual, seed=unit_seed(settings.seed, case.key))]
    return write_outputs(Path(out), rows, getattr(model, "name", spec.name), settings, perceptual.absent)


@dataclass(frozen=True)
class PieBenchSweep:
    """The experiment as a `dicelib.sweep` task: one unit per case and group of grid points sharing an inversion.

    `points` (the grid) holds overrides of `settings` (e.g. ({"lambda1": 0.5}, {"lambda1": 0.7, "cfg": 5.0})); one
    point (the default) writes the tables of `run`, byte for byte; more points label each DICE row
    with its overrides.
    """

    data: str
    model: str
    out: str
    settings: Settings = Settings()
    points: tuple[dict, ...] = ({},)  # the grid: overrides of `settings`
    limit: int | None = None
    edit_types: tuple[int, ...] | None = None
    device: str | None = None
    clip: str | None = "openai/clip-vit-large-patch14"
    dino: str | None = "facebook/dino-vitb8"
    name: str = "piebench"

    def __post_init__(self) -> None:
        allowed = [f for f in Settings.__dataclass_fields__ if f != "seed"]
        for point in self.points:
            bad = sorted(set(point) - set(allowed)) if isinstance(point, dict) else [point]
            if bad:
                raise DiceError(f"PIE-Bench grid point {point!r} sets {bad}; expected a mapping of {', '.join(allowed)}")
        if not self.points:
            raise DiceError("the PIE-Bench grid is empty; give at least one point ({} = the settings as they are)")

    def _cases(self) -> list[PieCase]:
        return load_piebench(self.data, edit_types=self.edit_types, limit=self.limit)

    def cases(self) -> list[str]:
        return [c.key for c in self._cases()]

    def grid(self) -> list[dict]:
        return [dict(point) for point in self.points]

    def inversion_key(self, point: dict) -> Any:
        from ..registry import get_spec

        return replace(self.settings, **point).resolve(get_spec(self.model).settings).inversion()

    def fingerprint(self) -> dict[str, Any]:
        return {"model": self.model, "settings": asdict(self.settings), "clip": self.clip, "dino": self.dino,
                "data": file_fingerprint(Path(self.data) / "mapping_file.json")}

    def setup(self) -> dict[str, Any]:
        from ..registry import load_model

        model, spec = load_model(self.model, self.device)
        perceptual = PerceptualMetrics.from_cache(self.clip, self.dino, device=self.device)
        return {"model": model, "spec": spec, "perceptual": perceptual, "cases": {c.key: c for c in self._cases()}}

    def meta(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"model": getattr(state["model"], "name", state["spec"].name), "absent": state["perceptual"].absent}

    def run(self, state: dict[str, Any], case: str, points: list[int], seed: int) -> list[dict]:
        grid = self.grid()
        multi = len(grid) > 1
        return run_case(state["model"], state["spec"], state["cases"][case],
                        [replace(self.settings, **grid[j]) for j in points], state["perceptual"], seed=seed,
                        labels=[_label(grid[j]) for j in points] if multi else None,
                        regeneration_label=_label(grid[points[0]], INVERSION_FIELDS) if multi else "")

    def merge(self, rows: list[dict], failed: list[dict], meta: dict[str, Any]) -> dict:
        if failed:
            print(f"{len(failed)} PIE-Bench unit(s) failed and are left out; first: {failed[0]['case']}: "
                  f"{failed[0]['error']}")
        return write_outputs(Path(self.out), rows, meta.get("model", self.model), self.settings, meta.get("absent", {}),
                             grid=self.grid())


def _grid(text: str) -> tuple[dict, ...]:
    """Return grid points from YAML/JSON such as '[{lambda1: 0.5}, {lambda1: 0.7}]' ('' or '[]': one point)."""
    import yaml

    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as err:
        raise DiceError(f"--grid {text!r} is not YAML: {err}") from None
    if value in (None, [], {}):
        return ({},)
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise DiceError(f"--grid {text!r} is not allowed; expected a list of mappings such as [{{lambda1: 0.5}}]")
    return tuple(value)


def main(argv: list[str] | None = None) -> dict:
    """Run the experiment from the command line (the DVC stage in experiments/piebench) through `dicelib.sweep`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with mapping_file.json and annotation_images/")
    p.add_argument("--model", default="amused/amused-256")
    p.add_argument("--out", required=True)
    p.add_argument("--records", default=None, help="unit records (resume) folder (default: <out>/records)")
    p.add_argument("--limit", type=int, default=0, help="first N cases (0 = all)")
    p.add_argument("--edit-types", default="all", help="comma-separated editing_type_id values, or 'all'")
    p.add_argument("--device", default="auto")
    p.add_argument("--clip", default="openai/clip-vit-large-patch14")
    p.add_argument("--dino", default="facebook/dino-vitb8")
    for name, kind in (("steps", int), ("tau", float), ("cfg", float), ("lambda1", float), ("lambda2", float),
                       ("pseudo-inverse", str)):  # "default" (or absent): the model's registry settings
        p.add_argument(f"--{name}", type=lambda s, k=kind: None if s in ("", "None", "null", "default") else k(s),
                       default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", default="", help="YAML list of overrides, e.g. '[{lambda1: 0.5}, {lambda1: 0.7, cfg: 5}]'")
    add_engine_arguments(p, threads=None)
    a = p.parse_args(argv)
    check_device(None if a.device == "auto" else a.device)
    check_folder("--out", a.out)
    check_folder("--records", a.records)
    types = None if a.edit_types == "all" else tuple(int(t) for t in a.edit_types.split(","))
    settings = Settings(a.steps, a.tau, a.cfg, a.lambda1, a.lambda2, a.pseudo_inverse, a.seed)
    task = PieBenchSweep(a.data, a.model, a.out, settings, _grid(a.grid), a.limit or None, types,
                         None if a.device == "auto" else a.device, a.clip or None, a.dino or None)
    records = Path(a.records) if a.records else Path(a.out) / "records"
    ran = run_sweep(task, a.seed, records, engine=a.engine, address=a.address, workers=a.workers,
                    max_retries=a.max_retries, threads=a.threads)
    print(summary_line(ran))
    return merge(task, a.seed, records)


if __name__ == "__main__":
    from ..io import run_stage

    run_stage(main)
