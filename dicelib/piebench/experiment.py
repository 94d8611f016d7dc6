"""Return the PIE-Bench experiment (paper Tables 1-3) for one image model: per-case metrics and the tables.

For each case: x0 = the model's tokens of the image; DICE inverts x0 under the source prompt,
then (Table 1) reconstructs with the source prompt (lambda1 = 1, lambda2 = 0) and (Tables 2, 3)
edits under the target prompt. The baseline "masked regeneration" (the paper's inpainting row)
re-generates from the same noised start without latents (lambda1 = 0, lambda2 = 1). Metrics:
PSNR / token accuracy (Table 1); DINO structure distance and CLIP similarity, whole image and
edited region (Table 2); PSNR, LPIPS, MSE, SSIM outside the edit mask (Table 3), printed as the
paper does (LPIPS x10^3, MSE x10^4, SSIM x10^2, structure x10^3). Metrics whose weights are
missing are written as absent (empty in CSV, "absent" in Markdown, null + reason in JSON).

    python -m dicelib.piebench_experiment --data data/PIE-Bench --model amused/amused-256 --out results/
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .metrics import PerceptualMetrics, scaled
from ..core.protocol import model_device
from ..core.settings import EditSettings
from .loader import PieCase, load_piebench
from ..io import atomic_write, jsonable

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


def run_case(model: Any, spec: Any, case: PieCase, settings: Settings, perceptual: PerceptualMetrics) -> list[dict]:
    """Return one row per method with the case's reconstruction, editing and background metrics (unscaled)."""
    import dicelib

    s = settings.resolve(spec.settings)
    image = case.image(model.image_size)  # [1, 3, S, S]
    mask = _mask_at(case, model.image_size)
    x0 = model.encode_image(image)
    src, tgt = model.encode_prompt([case.source_prompt]), model.encode_prompt([case.target_prompt])
    device = model_device(model)
    gen = lambda offset: torch.Generator(device=device).manual_seed(settings.seed + offset)  # noqa: E731
    inv = dicelib.invert(model, x0, src, generator=gen(0), **s.invert_kwargs())
    rows = []
    for method, (r1, r2), (e1, e2) in (("DICE", (1.0, 0.0), (s.lambda1, s.lambda2)),
                                       ("masked regeneration", (0.0, 1.0), (0.0, 1.0))):
        recon = dicelib.edit(model, inv, src, lambda1=r1, lambda2=r2, generator=gen(1))
        edited = dicelib.edit(model, inv, tgt, lambda1=e1, lambda2=e2, generator=gen(2))
        recon_img, edit_img = model.decode(recon).cpu(), model.decode(edited).cpu()
        row = {"key": case.key, "edit_type": case.edit_type_name, "method": method,
               "token_accuracy": float((recon == x0).float().mean()),
               "recon_psnr": pixel_metrics(image[0], recon_img[0])["psnr"],
               "recon_psnr_vq": pixel_metrics(model.decode(x0).cpu()[0], recon_img[0])["psnr"]}
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
    for name, cols in TABLES.items():
        out[name] = [{"method": f"{method} + {model_name}",
                      **{label: _scale(scale, _mean([r[field] for r in rows if r["method"] == method]))
                         for label, field, scale in cols}} for method in METHODS]
    types = sorted({r["edit_type"] for r in rows})
    out["dice_by_edit_type"] = [{"edit type": t, **{label: _scale(scale, _mean([r[field] for r in rows
                                 if r["method"] == "DICE" and r["edit_type"] == t]))
                                 for label, field, scale in TABLES["table2_editing"] + TABLES["table3_background"]}}
                                for t in types]
    return out


def write_outputs(out: Path, rows: list[dict], model_name: str, settings: Settings, absent: dict[str, str]) -> dict:
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
               "absent": absent, **{name: table for name, table in result.items() if name.startswith("table")}}
    # inf (exact reconstruction) is written as the string "inf": JSON has no infinity and null means absent
    metrics = json.loads(json.dumps(metrics, default=str).replace("Infinity", '"inf"'))
    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(jsonable(metrics), indent=2) + "\n"))
    return metrics


def run(model: Any, spec: Any, cases: list[PieCase], settings: Settings, perceptual: PerceptualMetrics,
        out: Path, progress: bool = True) -> dict:
    """Return the metrics dict after running every case and writing the outputs under `out`."""
    rows = [row for case in tqdm(cases, desc="PIE-Bench", disable=not progress) for row in
            run_case(model, spec, case, settings, perceptual)]
    return write_outputs(Path(out), rows, getattr(model, "name", spec.name), settings, perceptual.absent)


def main(argv: list[str] | None = None) -> dict:
    """Run the experiment from the command line (the DVC stage in experiments/piebench)."""
    from ..registry import load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with mapping_file.json and annotation_images/")
    p.add_argument("--model", default="amused/amused-256")
    p.add_argument("--out", required=True)
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
    a = p.parse_args(argv)
    types = None if a.edit_types == "all" else [int(t) for t in a.edit_types.split(",")]
    cases = load_piebench(a.data, edit_types=types, limit=a.limit or None)
    device = None if a.device == "auto" else a.device
    model, spec = load_model(a.model, device)
    perceptual = PerceptualMetrics.from_cache(a.clip or None, a.dino or None, device=device)
    settings = Settings(a.steps, a.tau, a.cfg, a.lambda1, a.lambda2, a.pseudo_inverse, a.seed)
    return run(model, spec, cases, settings, perceptual, Path(a.out))


if __name__ == "__main__":
    main()
