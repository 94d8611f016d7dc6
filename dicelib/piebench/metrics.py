"""Return image metrics that need pretrained weights (LPIPS, CLIP similarity, DINO structure), or None when absent.

Each backbone loads only from local files (the Hugging Face cache for CLIP and DINO; the `lpips`
package plus torchvision's cached AlexNet for LPIPS). A metric whose weights are missing is
reported as absent (None, with the reason in `absent`), never as zero. PIE-Bench conventions:
- CLIP similarity: 100 * max(cos(image, text), 0), whole image and edited region (image * mask);
- structure distance: MSE between the cosine self-similarity of DINO ViT last-layer keys
  (Tumanyan et al.'s Splice), printed x10^3;
- LPIPS on the background (outside the edit mask), printed x10^3.
Images are float tensors [B, 3, H, W] in [0, 1]; masks [B, H, W] (or [H, W]), 1 = edited region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import DiceError

CLIP_ID = "openai/clip-vit-large-patch14"  # PIE-Bench's CLIP
DINO_ID = "facebook/dino-vitb8"  # Splice's / PIE-Bench's structure backbone
SCALES = {"lpips": 1e3, "structure": 1e3, "clip_whole": 1.0, "clip_edited": 1.0}  # SPEC §6 print scale
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet checkpoint, which lpips needs


def _prepare(images: torch.Tensor, size: int, mean: tuple, std: tuple, device: torch.device) -> torch.Tensor:
    """Return images resized (shortest side), centre-cropped to size x size and normalised."""
    x = images.to(device, torch.float32)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top:top + size, left:left + size]
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - m) / s


def _mask4(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(mask, dtype=torch.float32, device=like.device)
    m = m[None] if m.dim() == 2 else m
    if m.shape[-2:] != like.shape[-2:]:
        raise DiceError(f"mask of size {tuple(m.shape[-2:])} does not match images of size {tuple(like.shape[-2:])}")
    return m[:, None].expand(like.shape[0], 1, *like.shape[-2:])


@dataclass
class PerceptualMetrics:
    """Optional backbones; a None backbone means that metric is absent (reason in `absent`)."""

    clip_model: Any = None  # transformers CLIPModel
    clip_tokenizer: Any = None
    dino_model: Any = None  # transformers ViTModel (DINO)
    lpips_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # images in [-1, 1] -> [B]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    absent: dict[str, str] = field(default_factory=dict)  # metric -> why it is absent

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        for m in (self.clip_model, self.dino_model):
            if m is not None:
                m.to(self.device).eval()
        if self.clip_model is None:
            self.absent.setdefault("clip", "no CLIP model given")
        if self.dino_model is None:
            self.absent.setdefault("structure", "no DINO model given")
        if self.lpips_fn is None:
            self.absent.setdefault("lpips", "no LPIPS network given")

    @classmethod
    def from_cache(cls, clip_id: str | None = CLIP_ID, dino_id: str | None = DINO_ID, lpips_net: str | None = "alex",
                   device: str | torch.device | None = None) -> "PerceptualMetrics":
        """Return the metrics whose weights are on disk (offline); the rest are recorded as absent."""
        from ..adapters.hub import default_device

        absent: dict[str, str] = {}
        clip_model = clip_tok = dino = lpips_fn = None
        if clip_id:
            try:
                from transformers import CLIPModel, CLIPTokenizer

                clip_model = CLIPModel.from_pretrained(clip_id, local_files_only=True)
                clip_tok = CLIPTokenizer.from_pretrained(clip_id, local_files_only=True)
            except (OSError, ValueError) as err:
                clip_model, absent["clip"] = None, f"{clip_id} not in the local HF cache ({type(err).__name__})"
        if dino_id:
            try:
                from transformers import ViTModel

                dino = ViTModel.from_pretrained(dino_id, local_files_only=True, add_pooling_layer=False)
            except (OSError, ValueError) as err:
                absent["structure"] = f"{dino_id} not in the local HF cache ({type(err).__name__})"
        if lpips_net:
            lpips_fn, why = _load_lpips(lpips_net)
            if lpips_fn is None:
                absent["lpips"] = why
        return cls(clip_model, clip_tok, dino, lpips_fn, default_device(device), absent)

    # --- CLIP -------------------------------------------------------------------------------
    @torch.no_grad()
    def clip_similarity(self, images: torch.Tensor, prompts: list[str], mask: torch.Tensor | None = None) -> list[float] | None:
        """Return 100 * max(cos, 0) between each image (times `mask` if given) and its prompt, or None if absent."""
        if self.clip_model is None:
            return None
        if mask is not None:
            images = images * _mask4(mask, images).to(images.device)  # keep the edited region, black elsewhere
        size = self.clip_model.config.vision_config.image_size
        pixels = _prepare(images, size, _CLIP_MEAN, _CLIP_STD, self.device)
        limit = min(self.clip_tokenizer.model_max_length, self.clip_model.config.text_config.max_position_embeddings)
        tok = self.clip_tokenizer(list(prompts), padding="max_length", max_length=limit, truncation=True, return_tensors="pt")
        out = self.clip_model(pixel_values=pixels, input_ids=tok.input_ids.to(self.device),
                              attention_mask=tok.attention_mask.to(self.device))
        cos = F.cosine_similarity(out.image_embeds, out.text_embeds, dim=-1)
        return (100 * cos.clamp(min=0)).tolist()

    # --- DINO structure ---------------------------------------------------------------------
    def _key_self_similarity(self, images: torch.Tensor) -> torch.Tensor:
        """Return the cosine self-similarity [B, N, N] of the last layer's attention keys (all heads concatenated)."""
        # the last key projection ("...k_proj" in transformers 5, "...attention.key" before)
        names = [(n, m) for n, m in self.dino_model.named_modules() if n.endswith(("k_proj", "attention.key"))]
        if not names:
            raise DiceError(f"{type(self.dino_model).__name__} has no attention key projection to read")
        key_proj = names[-1][1]
        store: list[torch.Tensor] = []
        handle = key_proj.register_forward_hook(lambda _m, _i, out: store.append(out))
        try:
            size = self.dino_model.config.image_size
            self.dino_model(pixel_values=_prepare(images, size, _IMAGENET_MEAN, _IMAGENET_STD, self.device))
        finally:
            handle.remove()
        keys = F.normalize(store[0].float(), dim=-1)  # [B, N, hidden]
        return keys @ keys.transpose(1, 2)

    @torch.no_grad()
    def structure_distance(self, source: torch.Tensor, edited: torch.Tensor) -> list[float] | None:
        """Return the per-image MSE between DINO key self-similarities of source and edit (unscaled), or None."""
        if self.dino_model is None:
            return None
        a, b = self._key_self_similarity(source), self._key_self_similarity(edited)
        return ((a - b) ** 2).mean(dim=(1, 2)).tolist()

    # --- LPIPS ------------------------------------------------------------------------------
    @torch.no_grad()
    def lpips(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> list[float] | None:
        """Return LPIPS(a, b) per image (unscaled); with `mask`, only outside it (edited region blacked out)."""
        if self.lpips_fn is None:
            return None
        if mask is not None:
            keep = 1 - _mask4(mask, a)
            a, b = a * keep.to(a.device), b * keep.to(b.device)
        out = self.lpips_fn(a.to(self.device) * 2 - 1, b.to(self.device) * 2 - 1)
        return out.reshape(-1).float().tolist()

    # --- all at once ------------------------------------------------------------------------
    def compute(self, source: torch.Tensor, edited: torch.Tensor, target_prompts: list[str],
                mask: torch.Tensor) -> dict[str, list[float] | None]:
        """Return {clip_whole, clip_edited, structure, lpips} per image, unscaled; None = absent."""
        return {
            "clip_whole": self.clip_similarity(edited, target_prompts),
            "clip_edited": self.clip_similarity(edited, target_prompts, mask=mask),
            "structure": self.structure_distance(source, edited),
            "lpips": self.lpips(source, edited, mask=mask),
        }


def scaled(name: str, value: float | None) -> float | None:
    """Return `value` in the paper's print scale (SPEC §6); None (absent) stays None, never 0."""
    return None if value is None else float(value) * SCALES.get(name, 1.0)


def _load_lpips(net: str) -> tuple[Callable | None, str]:
    """Return (LPIPS callable, "") when the `lpips` package and its backbone weights are on disk, else (None, why)."""
    try:
        import lpips  # noqa: F401  (optional: it depends on torchvision, which this project does not install)
    except ImportError:
        return None, "the optional `lpips` package is not installed (it needs torchvision)"
    if net == "alex" and not (Path(torch.hub.get_dir()) / "checkpoints" / _ALEXNET_FILE).is_file():
        return None, f"torchvision's AlexNet weights ({_ALEXNET_FILE}) are not in the torch hub cache"
    model = lpips.LPIPS(net=net, verbose=False).eval()
    return (lambda a, b: model.to(a.device)(a, b)), ""
