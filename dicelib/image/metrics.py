"""Return image metrics of the image track: PSNR, MSE, SSIM (whole and outside a mask) and ShapesBench's exact ones.

Pixel metrics (SPEC §6) go through scikit-image on RGB images scaled to [0, 1] (the paper's
convention: it prints MSE x 10^4 and SSIM x 10^2; `PAPER_SCALE` holds those factors for tables).
Identical images have infinite PSNR; `psnr` caps it at `PSNR_CAP` dB so means and JSON stay finite.
Outside-mask variants (background preservation, DICE Table 3): MSE and PSNR over the pixels
outside the mask only, SSIM as the mean of the SSIM map over those pixels.

Exact ShapesBench metrics compare token ids:
- `token_accuracy(pred, ref)`: fraction of equal pixels (reconstruction);
- `edit_accuracy(pred, target, mask)`: fraction of pixels inside the edit mask equal to the
  oracle target (did the edit happen?);
- `preservation(pred, source, mask)`: fraction of pixels outside the mask equal to the source
  (did everything else stay?).
All take batches [..., H, W] (or [B, D]) and return one value per image.
"""

from __future__ import annotations

import warnings

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from ..errors import DiceError

PSNR_CAP = 100.0  # dB reported for identical images (true PSNR is infinite)
PAPER_SCALE = {"mse": 1e4, "ssim": 1e2, "lpips": 1e3, "structure": 1e3}  # as DICE's tables print them


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise DiceError(f"images must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _rows(a: np.ndarray) -> np.ndarray:
    """Return a as [N, pixels] (one row per image, last dims flattened)."""
    return a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1) if a.ndim == 2 else a.reshape(-1, a.shape[-2] * a.shape[-1])


def token_accuracy(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Return the fraction of equal tokens per image: [N] in [0, 1]."""
    pred, ref = _pair(pred, ref)
    return (_rows(pred) == _rows(ref)).mean(axis=1)


def _masked_mean(equal: np.ndarray, where: np.ndarray) -> np.ndarray:
    n = where.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (equal & where).sum(axis=1) / np.maximum(n, 1), np.nan)


def edit_accuracy(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return per image the fraction of pixels inside `mask` equal to the oracle target ([N]; NaN for an empty mask)."""
    pred, target = _pair(pred, target)
    mask = np.asarray(mask, dtype=bool)
    _pair(pred, mask)
    return _masked_mean(_rows(pred) == _rows(target), _rows(mask))


def preservation(pred: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return per image the fraction of pixels outside `mask` equal to the source ([N]; NaN if all masked)."""
    pred, source = _pair(pred, source)
    mask = np.asarray(mask, dtype=bool)
    _pair(pred, mask)
    return _masked_mean(_rows(pred) == _rows(source), ~_rows(mask))


def _images(a: np.ndarray) -> np.ndarray:
    """Return RGB float images [N, H, W, 3] in [0, 1] from uint8 or float [N, H, W, 3] or [H, W, 3]."""
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise DiceError(f"pixel metrics take RGB images [N, H, W, 3] or [H, W, 3], got shape {a.shape}")
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def mse(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, outside: bool = False) -> np.ndarray:
    """Return per-image MSE [N] on [0, 1] RGB; with `mask` [N, H, W] and outside=True, over pixels outside it."""
    pred, ref = _pair(_images(pred), _images(ref))
    if mask is None or not outside:
        return np.array([mean_squared_error(r, p) for p, r in zip(pred, ref)])
    keep = ~np.asarray(mask, dtype=bool).reshape(pred.shape[:3])
    return np.array([mean_squared_error(r[k], p[k]) if k.any() else np.nan for p, r, k in zip(pred, ref, keep)])


def psnr(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, outside: bool = False) -> np.ndarray:
    """Return per-image PSNR in dB [N] (capped at PSNR_CAP for identical images), optionally outside `mask`."""
    pred, ref = _pair(_images(pred), _images(ref))
    keep = None if mask is None or not outside else ~np.asarray(mask, dtype=bool).reshape(pred.shape[:3])
    out = []
    for i, (p, r) in enumerate(zip(pred, ref)):
        if keep is not None:
            if not keep[i].any():
                out.append(np.nan)
                continue
            p, r = p[keep[i]], r[keep[i]]
        with warnings.catch_warnings():  # identical images: skimage warns about log10(0)
            warnings.simplefilter("ignore", RuntimeWarning)
            v = peak_signal_noise_ratio(r, p, data_range=1.0)
        out.append(min(float(v), PSNR_CAP))
    return np.array(out)


def ssim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, outside: bool = False,
         win_size: int = 7) -> np.ndarray:
    """Return per-image SSIM [N] (RGB, 7x7 windows); with `mask` and outside=True, the SSIM map's mean outside it."""
    pred, ref = _pair(_images(pred), _images(ref))
    out = []
    for i, (p, r) in enumerate(zip(pred, ref)):
        value, smap = structural_similarity(r, p, data_range=1.0, channel_axis=-1, win_size=win_size, full=True)
        if mask is not None and outside:
            keep = ~np.asarray(mask, dtype=bool).reshape(pred.shape[:3])[i]
            value = smap.mean(axis=-1)[keep].mean() if keep.any() else np.nan
        out.append(float(value))
    return np.array(out)


def pixel_metrics(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Return {"psnr", "mse", "ssim"} per image [N], plus "*_outside" variants when `mask` is given."""
    out = {"psnr": psnr(pred, ref), "mse": mse(pred, ref), "ssim": ssim(pred, ref)}
    if mask is not None:
        out |= {"psnr_outside": psnr(pred, ref, mask, outside=True), "mse_outside": mse(pred, ref, mask, outside=True),
                "ssim_outside": ssim(pred, ref, mask, outside=True)}
    return out
