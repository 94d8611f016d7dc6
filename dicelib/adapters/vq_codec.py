"""Return image tensors from files/PIL/arrays, and VQ token maps from images (and back).

Shared by the image adapters. Images cross the adapter boundary as float tensors [B, 3, H, W] in
[0, 1]; each adapter maps that to its VQ model's own range. VQ models always run in float32:
diffusers' VQ decoders give NaNs in float16.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_write

from ..errors import DiceError


def check_image_path(path: str | Path) -> Path:
    """Return `path` as a Path if it names an existing file; else raise a DiceError saying what it is instead."""
    path = Path(path)
    if path.is_dir():
        raise DiceError(f"image {str(path)!r} is a directory; give an image file (PNG, JPEG, ...)")
    if not path.is_file():
        raise DiceError(f"image {str(path)!r} does not exist")
    return path


@lru_cache(maxsize=None)
def _writable_formats() -> dict[str, str]:
    """Return {extension: PIL format} for the formats this PIL writes RGB images in (stubs, 1-bit-only: not)."""
    import io

    from PIL import Image

    Image.init()
    probe, formats = Image.new("RGB", (1, 1)), {}
    for ext, fmt in sorted(Image.registered_extensions().items()):
        try:
            probe.save(io.BytesIO(), format=fmt)
            formats[ext] = fmt
        except (OSError, ValueError, KeyError):
            pass
    return formats


def image_format(path: str | Path) -> str:
    """Return the PIL format `save_image` writes `path` in (no extension: PNG); else raise a DiceError."""
    ext = Path(path).suffix.lower()
    if not ext:
        return "PNG"
    formats = _writable_formats()
    if ext not in formats:
        raise DiceError(f"cannot write an image as {str(path)!r}: unknown image extension {ext!r}; expected one of "
                        f"{', '.join(formats)} (.png is lossless)")
    return formats[ext]


def _open(path: Path) -> Any:
    """Return the PIL image at `path`, opened lazily; a DiceError when it is not an image or is too large.

    Images over Pillow's limit (Image.MAX_IMAGE_PIXELS, about 89 Mpx) are refused with one clear
    error instead of Pillow's decompression-bomb warning or exception.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DiceError(f"image {str(path)!r} is too large to read safely ({err}); expected at most "
                        f"{Image.MAX_IMAGE_PIXELS:,} pixels: downscale it first") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DiceError(f"cannot read image {str(path)!r}: not a readable PNG/JPEG/... file") from err


HIGH_DEPTH = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535}  # Pillow mode: its white


def _to_rgb(im: Any, path: Path) -> Any:
    """Return `im` as an 8-bit RGB image, 16-bit and 32-bit grayscale scaled to 8 bits (not clipped to white)."""
    from PIL import Image

    if im.mode in HIGH_DEPTH or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        white = HIGH_DEPTH.get(im.mode, 65535 if im.mode == "I" else 1.0)
        if arr.size and (arr.min() < 0 or arr.max() > white):
            raise DiceError(f"image {str(path)!r} is {im.mode} grayscale with values in [{arr.min():g}, {arr.max():g}]; "
                            f"expected 8- or 16-bit values (0..{white:g}): save it as an 8-bit PNG or JPEG")
        im = Image.fromarray(np.round(arr / white * 255).astype(np.uint8), mode="L")
    return im.convert("RGB")


def fit_note(path: str | Path, size: int) -> str | None:
    """Return what encoding does to the image at `path` when it is not `size` x `size` (centre crop to a
    square, then resize), or None when it fits (or cannot be read: loading it then says why)."""
    try:
        with _open(check_image_path(path)) as im:
            w, h = im.size
    except DiceError:
        return None
    if (w, h) == (size, size):
        return None
    side = min(w, h)
    crop = f"centre-cropped to {side}x{side} and " if w != h else ""
    return (f"{path} is {w}x{h} but the model works on {size}x{size} images: it is {crop}resized to "
            f"{size}x{size}, and the reconstruction and edits are of that resized image")


def load_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """Return the RGB image at `path` as [1, 3, H, W] in [0, 1] (centre-cropped and resized to `size`)."""
    path = check_image_path(path)
    with _open(path) as im:
        try:
            im.load()
        except OSError as err:
            raise DiceError(f"cannot read image {str(path)!r}: not a readable PNG/JPEG/... file ({err})") from err
        im = _to_rgb(im, path)
    return to_image_tensor(im, size)


def _square_resize(im: Any, size: int) -> Any:
    from PIL import Image

    w, h = im.size
    side = min(w, h)  # centre crop to a square first: the models are trained on square images
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    return im if side == size else im.resize((size, size), Image.Resampling.BICUBIC)


def to_image_tensor(images: Any, size: int | None = None) -> torch.Tensor:
    """Return images (PIL, list of PIL, paths, uint8/float arrays [B,H,W,3], tensors [B,3,H,W]) as [B, 3, H, W] in [0, 1]."""
    from PIL import Image

    if isinstance(images, (str, Path)):
        return load_image(images, size)
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise DiceError("no images given")
        parts = []
        for im in images:
            if isinstance(im, (str, Path)):
                parts.append(load_image(im, size))
                continue
            if not isinstance(im, Image.Image):
                parts.append(to_image_tensor(im, size))
                continue
            im = im.convert("RGB")
            if size is not None:
                im = _square_resize(im, size)
            parts.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None])
        return torch.cat(parts)
    if isinstance(images, np.ndarray):
        arr = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
        arr = arr[None] if arr.ndim == 3 else arr
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise DiceError(f"image arrays must be [H, W, 3] or [B, H, W, 3], got {images.shape}")
        images = torch.from_numpy(arr).permute(0, 3, 1, 2)
    if isinstance(images, torch.Tensor):
        x = images.float()
        x = x[None] if x.dim() == 3 else x
        if x.dim() != 4 or x.shape[1] != 3:
            raise DiceError(f"image tensors must be [3, H, W] or [B, 3, H, W] in [0, 1], got {tuple(images.shape)}")
        if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
            return torch.cat([to_image_tensor(p, size) for p in to_pil(x)])
        return x.clamp(0, 1)
    raise DiceError(f"unsupported image type {type(images).__name__}; use PIL images, paths, arrays or tensors")


def to_pil(images: torch.Tensor) -> list:
    """Return [B, 3, H, W] images in [0, 1] as a list of PIL images."""
    from PIL import Image

    arr = (images.detach().float().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Return `path` after writing one image [3, H, W] or [1, 3, H, W] atomically (temp file, then rename)."""
    path = Path(path)
    pil = to_pil(image if image.dim() == 4 else image[None])[0]
    fmt = image_format(path)
    return atomic_write(path, lambda f: pil.save(f, format=fmt), mode="wb")


def quantizer(vq: Any) -> Any:
    """Return the vector quantizer of a diffusers VQ model (`quantize` in VQModel, `vquantizer` in PaellaVQModel)."""
    quant = getattr(vq, "quantize", None)
    return quant if quant is not None else vq.vquantizer


@torch.no_grad()
def vq_encode(vq: Any, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Return codebook ids [B, h*w] (row-major) and the token grid (h, w) of pixels in the VQ's range."""
    dev = next(vq.parameters()).device
    latents = vq.encode(pixels.to(dev, torch.float32)).latents  # [B, C, h, w]
    b, _, h, w = latents.shape
    indices = quantizer(vq)(latents)[2][2]  # flat [B*h*w]
    return indices.reshape(b, h * w).long(), (h, w)


@torch.no_grad()
def vq_decode(vq: Any, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Return the VQ decoder's raw output [B, 3, H, W] (float32) for codebook ids [B, h*w]."""
    dev = next(vq.parameters()).device
    b, (h, w) = tokens.shape[0], grid
    if tokens.shape[1] != h * w:
        raise DiceError(f"token map has {tokens.shape[1]} positions, expected {h}x{w} = {h * w}")
    ids = tokens.to(dev).reshape(b, h, w)
    quant = quantizer(vq)
    shape = (b, h, w, quant.embedding.weight.shape[1])
    if vq.config.get("lookup_from_codebook", False):  # aMUSEd's VQ looks ids up itself
        return vq.decode(ids, force_not_quantize=True, shape=shape).sample.float()
    emb = quant.get_codebook_entry(ids.reshape(-1), shape=shape)  # [B, C, h, w]
    return vq.decode(emb, force_not_quantize=True).sample.float()
