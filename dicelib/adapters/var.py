"""Return VAR (class-conditional next-scale prediction, ImageNet 256 px) wrapped as a NextScaleDenoiser for dicelib.

VAR (Tian et al. 2024; FoundationVision/VAR, MIT; weights `FoundationVision/var`: `var_d16.pth` ...
`var_d30.pth` and the tokenizer `vae_ch160v4096z32.pth`) tokenizes a 256 px image into 10 token maps
(1x1 ... 16x16, 680 tokens, one codebook of K = 4096) with a multi-scale residual quantizer, and its
transformer predicts every token of scale k at once from the class and the maps of scales < k.
Parts: our `VQVAE` (var_vae.py) and `VARNet` (var_net.py), both state_dict-compatible with the
official files. A condition is a LongTensor [B] of ImageNet class ids; `encode_prompt` takes ids or
class names ("tabby cat", "tiger"); the null class (id 1000) is the unconditional condition.
Guidance is applied by dicelib (`cfg_schedule="linear"` is VAR's ramp: no guidance at the first
scale, `cfg_scale` at the last); the adapter returns the raw logits of each row's class.

`scale_logits` keeps the keys and values of the scales it has computed (a KV cache, per condition
and prefix, a few entries), so the scale-by-scale calls of inversion and editing each run only the
new scale's tokens; `kv_cache=False` recomputes the whole prefix every call (the same numbers up to
float rounding, tested).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, Sequence

import torch

from ..core.atomic import atomic_write
from ..errors import DiceError, MissingWeightsError, is_int
from .hub import default_device, missing_weights_message, place, resolve_snapshot
from .imagenet_classes import class_id
from .paella import load_weights, read_state_dict
from .var_net import KV, VARNet
from .var_vae import VQVAE
from .vq_codec import to_image_tensor

REPO_ID = "FoundationVision/var"
VAE_FILE = "vae_ch160v4096z32.pth"
CONFIG_FILE = "var_config.json"  # optional in a folder: {"depth", "var": VARNet kwargs, "vae": VQVAE kwargs}
DEPTHS = (16, 20, 24, 30)  # the released transformers
LAYOUT_FILE = Path(__file__).resolve().parent / "data" / "var_state_dicts.json"  # every key and shape of the official files
CACHE_ENTRIES = 4  # KV-cache entries kept (e.g. an inversion's rows and an edit's rows)


def var_file(depth: int) -> str:
    """Return the official checkpoint name of the depth-`depth` transformer."""
    return f"var_d{depth}.pth"


def registry_depth(name: str) -> int | None:
    """Return the depth of a registry name "var-d<depth>" of a released model, else None."""
    head, _, depth = name.partition("-d")
    return int(depth) if head == "var" and depth.isdigit() and int(depth) in DEPTHS else None


def weights_status(depth: int) -> str:
    """Return whether the HF cache holds var_d{depth}.pth and the tokenizer: "in HF cache" or "weights missing"."""
    try:
        root = resolve_snapshot(REPO_ID)
    except DiceError:
        return "weights missing"
    return "in HF cache" if all((root / f).is_file() for f in (var_file(depth), VAE_FILE)) else "weights missing"


def published_kwargs(depth: int) -> dict[str, Any]:
    """Return VARNet's arguments for a released depth: width 64 d, d heads, L2-normalised attention (build_vae_var)."""
    return dict(depth=depth, embed_dim=64 * depth, num_heads=depth, attn_l2_norm=True, shared_aln=False)


VAE_KWARGS = dict(vocab_size=4096, z_channels=32, ch=160, share_quant_resi=4)  # vae_ch160v4096z32


@dataclass
class _CacheEntry:
    labels: torch.Tensor  # [B]
    maps: list[torch.Tensor]  # the prefix the cached scales were computed from
    done: int  # scales 0..done-1 have keys and values
    f_hat: torch.Tensor  # the quantizer's f_hat after maps 0..done-2
    kv: list[KV]


class VAR:
    """VAR as a NextScaleDenoiser: `scale_logits(prefix maps, class ids [B]) -> logits [B, h_k w_k, K]`."""

    method = "next_scale"  # dicelib.invert(..., method=...)
    repo_id = REPO_ID
    default_cfg = 1.5  # VAR's README FID numbers (its demo samples at 4)
    cfg_schedule = "linear"  # VAR's guidance ramp: t = cfg k / (S - 1)
    cond_format = "ImageNet class ids, a LongTensor [B] (encode_prompt takes ids or class names)"

    def __init__(self, vae: VQVAE, net: VARNet, device: str | torch.device | None = None, name: str = "var",
                 kv_cache: bool = True) -> None:
        if (vae.vocab_size, vae.Cvae, tuple(vae.v_patch_nums)) != (net.V, net.Cvae, tuple(net.patch_nums)):
            raise DiceError(f"VQVAE (V {vae.vocab_size}, Cvae {vae.Cvae}, scales {tuple(vae.v_patch_nums)}) does not fit "
                            f"VARNet (V {net.V}, Cvae {net.Cvae}, scales {tuple(net.patch_nums)})")
        self.name = name
        self.device = default_device(device)
        self.vae = place(vae, self.device, torch.float32)
        self.net = place(net, self.device, torch.float32)
        self.num_classes = int(net.V)  # K: codebook entries
        self.num_labels = int(net.num_classes)  # ImageNet classes; id num_labels is the null class
        self.scales = [(int(p), int(p)) for p in net.patch_nums]
        self.image_size = int(net.patch_nums[-1]) * self.vae.downsample
        self.null_cond = torch.tensor([self.num_labels], device=self.device)  # one row: the null class
        self.kv_cache = kv_cache
        self._cache: list[_CacheEntry] = []

    # --- loading and saving -----------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, repo_id: str | Path | None = None, depth: int | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> Self:
        """Return VAR from a folder or the HF cache (never downloading); absent files -> one MissingWeightsError.

        `repo_id` (default FoundationVision/var) must hold var_d{depth}.pth and vae_ch160v4096z32.pth.
        `depth` (16, 20, 24 or 30) defaults to var_config.json's (written by `save_pretrained`), else 16;
        without that file both checkpoints are the published architectures. Other keyword arguments
        go to the constructor.
        """
        source = str(cls.repo_id if repo_id is None else repo_id)
        try:
            root: Path | None = resolve_snapshot(source)
        except MissingWeightsError:
            root = None
        config = json.loads((root / CONFIG_FILE).read_text()) if root is not None and (root / CONFIG_FILE).is_file() else {}
        depth = int(config.get("depth", 16)) if depth is None else depth
        if not is_int(depth) or depth < 1:
            raise DiceError(f"depth must be a positive int (released: {', '.join(map(str, DEPTHS))}); got {depth!r}")
        files = (var_file(depth), VAE_FILE)
        absent = [f for f in files if root is None or not (root / f).is_file()]
        if absent:
            raise MissingWeightsError(missing_weights_message(
                source, f"missing: {' and '.join(absent)} in {source}", [f"{REPO_ID} {' '.join(absent)}"],
                f"a folder with {var_file(depth)} and {VAE_FILE}"))
        with torch.device("meta"):  # no random init: the checkpoints' tensors are taken over
            net = VARNet(**config.get("var", published_kwargs(depth)))
            vae = VQVAE(**config.get("vae", VAE_KWARGS))
        net = load_weights(net, read_state_dict(root / files[0]), str(root / files[0]))
        vae = load_weights(vae, read_state_dict(root / files[1]), str(root / files[1]))
        kwargs.setdefault("name", source if depth == 16 or config else f"{source} (d{depth})")
        return cls(vae, net, device=device, **kwargs)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Return `folder` after writing the layout `from_pretrained` reads (the official file names and keys)."""
        folder = Path(folder)
        depth = self.net.depth
        for name, state in ((var_file(depth), self.net.state_dict()), (VAE_FILE, self.vae.state_dict())):
            atomic_write(folder / name, lambda f, state=state: torch.save(state, f), mode="wb")
        config = {"depth": depth, "var": self.net.config, "vae": self.vae.config}
        atomic_write(folder / CONFIG_FILE, lambda f: json.dump(config, f, indent=1))
        return folder

    # --- conditions -------------------------------------------------------------------------
    def encode_prompt(self, prompts: Any) -> torch.Tensor:
        """Return class ids [B] (long, on the device) for ids or ImageNet class names (one or a list)."""
        if isinstance(prompts, torch.Tensor):
            prompts = prompts.reshape(-1).tolist()
        items = [prompts] if isinstance(prompts, str) or is_int(prompts) else list(prompts)
        if not items:
            raise DiceError("no classes given")
        return torch.tensor([class_id(p, self.num_labels) for p in items], dtype=torch.long, device=self.device)

    def labels(self, cond: Any, rows: int | None) -> torch.Tensor:
        """Return the class ids [rows] (long, on the device) of `cond` (ids [B] or [B, 1]; one row repeats)."""
        if not isinstance(cond, torch.Tensor):
            raise DiceError(f"VAR conditions are {self.cond_format}; got {type(cond).__name__}")
        if cond.dtype.is_floating_point or cond.dtype == torch.bool or cond.dim() not in (1, 2) or (
                cond.dim() == 2 and cond.shape[1] != 1):
            raise DiceError(f"VAR conditions are {self.cond_format}; got a {cond.dtype} tensor of shape {tuple(cond.shape)}")
        labels = cond.reshape(-1).to(self.device).long()
        if rows is not None and labels.shape[0] != rows:
            if labels.shape[0] != 1:
                raise DiceError(f"{labels.shape[0]} conditions for {rows} rows of the prefix")
            labels = labels.expand(rows)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > self.num_labels):
            raise DiceError(f"class ids must be in 0..{self.num_labels} ({self.num_labels}: the null class); "
                            f"got {labels.tolist()}")
        return labels

    # --- images -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, images: Any) -> list[torch.Tensor]:
        """Return the token maps [B, h_k w_k] (row-major), coarse to fine, of images resized to `image_size`."""
        pixels = to_image_tensor(images, self.image_size).to(self.device, torch.float32)
        return self.vae.img_to_idxBl(pixels * 2 - 1)

    def check_maps(self, maps: Sequence[torch.Tensor], what: str = "maps") -> list[torch.Tensor]:
        """Return token maps as long tensors on the device after checking their count, shapes, rows and ids."""
        if not isinstance(maps, (list, tuple)) or len(maps) > len(self.scales):
            raise DiceError(f"{what} must be a list of at most {len(self.scales)} token maps [B, h*w]; got "
                            f"{type(maps).__name__}{'' if not isinstance(maps, (list, tuple)) else f' of {len(maps)}'}")
        out = []
        for k, m in enumerate(maps):
            h, w = self.scales[k]
            if not isinstance(m, torch.Tensor) or m.dim() != 2 or m.shape[1] != h * w or (
                    out and m.shape[0] != out[0].shape[0]):
                shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise DiceError(f"{what}[{k}] must be token ids [B, {h * w}] ({h}x{w}) with the rows of {what}[0]; "
                                f"got {shape}")
            m = m.to(self.device).long()
            if m.numel() and (int(m.min()) < 0 or int(m.max()) >= self.num_classes):
                raise DiceError(f"{what}[{k}] holds ids outside 0..{self.num_classes - 1}")
            out.append(m)
        return out

    @torch.no_grad()
    def decode(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return images [B, 3, H, W] in [0, 1] decoded from all S token maps."""
        maps = self.check_maps(maps)
        if len(maps) != len(self.scales):
            raise DiceError(f"decode takes all {len(self.scales)} token maps; got {len(maps)}")
        return self.vae.fhat_to_img(self.vae.idxBl_to_fhat(maps)).add(1).mul(0.5)

    # --- the protocol -----------------------------------------------------------------------
    @torch.no_grad()
    def scale_logits(self, prefix: Sequence[torch.Tensor], cond: Any) -> torch.Tensor:
        """Return the logits [B, h_k w_k, K] (float32) of scale k = len(prefix) given maps 0..k-1 and class ids [B]."""
        maps = self.check_maps(prefix, "prefix")
        k = len(maps)
        if k >= len(self.scales):
            raise DiceError(f"the prefix holds all {k} scales; there is no scale {k} to predict")
        labels = self.labels(cond, maps[0].shape[0] if maps else None)
        entry = self._lookup(labels, maps) if self.kv_cache else None
        side = self.scales[-1][0]
        if entry is None:
            first, past = 0, None
            f_hat = torch.zeros(labels.shape[0], self.vae.Cvae, side, side, device=self.device)
        else:
            first, past, f_hat = entry.done, entry.kv, entry.f_hat
        inputs = []
        for j in range(max(first, 1), k + 1):  # scale j's input: f_hat after maps 0..j-1, at scale j's size
            f_hat = f_hat + self.vae.quantize.scale_residual(maps[j - 1], j - 1, (side, side))
            inputs.append(self.vae.next_input(f_hat, j))
        logits, kv = self.net.run(labels, torch.cat(inputs, dim=1) if inputs else None, first, k + 1, past)
        if self.kv_cache:
            self._store(_CacheEntry(labels.clone(), [m.clone() for m in maps], k + 1, f_hat, kv), entry)
        h, w = self.scales[k]
        return logits[:, -h * w:]

    def _lookup(self, labels: torch.Tensor, maps: list[torch.Tensor]) -> _CacheEntry | None:
        """Return the cache entry that computed the most scales of this prefix and labels (None: none fits)."""
        best = None
        for e in self._cache:
            if e.done > len(maps) or e.labels.shape != labels.shape or not torch.equal(e.labels, labels):
                continue
            if all(torch.equal(e.maps[j], maps[j]) for j in range(e.done - 1)) and (best is None or e.done > best.done):
                best = e
        return best

    def _store(self, entry: _CacheEntry, used: _CacheEntry | None) -> None:
        """Keep `entry` as the newest cache entry (replacing the one it extends); drop the oldest past CACHE_ENTRIES."""
        self._cache = [e for e in self._cache if e is not used][-(CACHE_ENTRIES - 1):] + [entry]

    def clear_cache(self) -> None:
        """Drop every cached key and value (frees their memory)."""
        self._cache = []
