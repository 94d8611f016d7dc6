"""Return the `shapes` denoiser: a text-conditioned transformer over ShapesBench pixel tokens.

One network serves both DICE methods (SPEC §4). Inputs are K + 1 ids per pixel (K = 8 colours,
id K = [MASK]), outputs x0 logits over the K colours for every pixel. It is trained (see
`train_shapes`) on corruptions that mix uniform renoising, [MASK] absorption and
mask-and-replace, with `t` = the fraction of corrupted pixels. That is what both methods tell the
model: the masked method passes the masking level s_i, the multinomial method passes step/T,
and this model's own `transition_schedule` corrupts 1 - abar_t = t/T of the pixels at step t.

Architecture (a small U-shaped hybrid, chosen because it learns pixel-exact shapes within the
CPU budget): per-pixel embeddings (K + 1 ids) and residual 3x3 convolutions at full resolution
(local evidence), a strided convolution to 4x4-pixel patches (16 image tokens) that a pre-norm
transformer encoder reads together with the prompt's word tokens (global layout and the prompt),
then per-pixel features again (pixel shuffle) added to the local ones and decoded by residual
convolutions into K logits per pixel. The noise level t enters through Fourier features, added
to every token and to the convolutional stem. Prompts use a fixed 20-word vocabulary (no
tokenizer download): `cond` is a LongTensor [B, L] of word ids (see `encode`), a list of prompt
strings, or None (the null prompt, used for classifier-free guidance via prompt dropout).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import shapesbench as sb
from ..config import MODELS
from ..errors import DiceError
from ..io import atomic_write
from ..core.transitions import MultinomialSchedule

VOCAB = ("<pad>", "<null>", "a", "and", "on", "background", *sb.SIZES, *sb.COLOURS, *sb.SHAPES)
WORD_ID = {w: i for i, w in enumerate(VOCAB)}
CHECKPOINT = MODELS / "shapes.pt"


@dataclass(frozen=True)
class ShapesConfig:
    """Sizes of the `shapes` denoiser."""

    num_classes: int = sb.NUM_CLASSES  # K colours; input id K is [MASK]
    image_size: int = sb.SIZE  # pixels per side
    patch: int = 4  # pixels per patch side: 16 image tokens for the transformer
    dim: int = 128  # transformer width
    depth: int = 4  # transformer layers
    heads: int = 4  # attention heads
    pixel_dim: int = 64  # per-pixel features of the convolutional stem and decoder
    conv_depth: int = 3  # residual 3x3 convolution blocks in the stem and in the decoder (local shape evidence)
    prompt_len: int = 14  # word tokens per prompt (padded; the longest prompt has 13 words)
    num_steps: int = 16  # T of the model's mask-and-replace transition schedule
    replace_share: float = 0.1  # share of the multinomial corruption that is uniform replacement, not [MASK]


def encode(prompts: list[str] | tuple[str, ...], length: int = 14) -> torch.Tensor:
    """Return word ids [B, length] of prompts (padded with <pad>); "" is the null prompt."""
    if isinstance(prompts, str):
        prompts = [prompts]
    out = torch.full((len(prompts), length), WORD_ID["<pad>"], dtype=torch.long)
    for i, text in enumerate(prompts):
        words = text.split() or ["<null>"]
        unknown = sorted({w for w in words if w not in WORD_ID})
        if unknown:
            raise DiceError(f"unknown word(s) {unknown} in prompt {text!r}; the shapes vocabulary is {list(VOCAB[2:])}")
        if len(words) > length:
            raise DiceError(f"prompt {text!r} has {len(words)} words; the shapes model takes at most {length}")
        out[i, : len(words)] = torch.tensor([WORD_ID[w] for w in words])
    return out


def shapes_schedule(num_steps: int = 32, replace_share: float = 0.1) -> MultinomialSchedule:
    """Return the model's mask-and-replace schedule: t/T of the pixels corrupted at step t, a
    `replace_share` of them replaced by a uniform colour and the rest masked."""
    level = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    level = level.clamp(max=1 - 1e-6)  # keep abar_T > 0 so every posterior stays finite
    return MultinomialSchedule(1 - level, (1 - replace_share) * level)


class ConvBlock(nn.Module):
    """A residual pre-norm 3x3 convolution over per-pixel features [B, w, H, W]."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.GroupNorm(8 if width % 8 == 0 else 1, width)
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv(nn.functional.gelu(self.norm(h)))


class ShapesDenoiser(nn.Module):
    """The DiscreteDenoiser of ShapesBench: logits(x [B, 256] in 0..K, t [B], cond) -> [B, 256, K]."""

    def __init__(self, config: ShapesConfig | None = None):
        super().__init__()
        c = self.config = config or ShapesConfig()
        if c.image_size % c.patch or c.dim % c.heads:
            raise DiceError(f"image_size {c.image_size} must divide by patch {c.patch} and dim {c.dim} by heads {c.heads}")
        self.num_classes = c.num_classes
        self.mask_id = c.num_classes
        self.num_positions = c.image_size**2
        self.side = c.image_size // c.patch  # patches per side
        self.sub = c.patch**2  # pixels per patch
        w = c.pixel_dim
        self.pixel_embed = nn.Embedding(c.num_classes + 1, w)
        self.stem = nn.Sequential(*[ConvBlock(w) for _ in range(c.conv_depth)])  # local evidence at full resolution
        self.stem_time = nn.Linear(c.dim, w)
        self.stem_words = nn.Linear(c.dim, w)  # the prompt (pooled) reaches every pixel directly
        self.down = nn.Conv2d(w, c.dim, c.patch, stride=c.patch)  # 2x2 patches -> transformer tokens
        self.row_pos = nn.Parameter(torch.randn(self.side, 1, c.dim) * 0.02)  # factorised 2-D positions
        self.col_pos = nn.Parameter(torch.randn(1, self.side, c.dim) * 0.02)
        self.word_embed = nn.Embedding(len(VOCAB), c.dim)
        self.word_pos = nn.Parameter(torch.randn(c.prompt_len, c.dim) * 0.02)
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(100.0), 16)), persistent=False)
        self.time = nn.Sequential(nn.Linear(32, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, 4 * c.dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.up = nn.Linear(c.dim, self.sub * w)  # tokens -> per-pixel features (pixel shuffle)
        nn.init.zeros_(self.up.weight)  # the global branch starts silent: a plain CNN first, then layout
        nn.init.zeros_(self.up.bias)
        self.decode = nn.Sequential(*[ConvBlock(w) for _ in range(c.conv_depth)], nn.GroupNorm(8 if w % 8 == 0 else 1, w),
                                    nn.GELU(), nn.Conv2d(w, c.num_classes, 1))
        self.transition_schedule = shapes_schedule(c.num_steps, c.replace_share)

    @property
    def null_cond(self) -> torch.Tensor:
        """Return the null prompt's word ids [1, L] (classifier-free guidance)."""
        return encode([""], self.config.prompt_len).to(self.device)

    @property
    def device(self) -> torch.device:
        return self.word_pos.device

    def _cond_ids(self, cond: Any, rows: int) -> torch.Tensor:
        if cond is None:
            return self.null_cond.expand(rows, -1)
        if isinstance(cond, (list, tuple)):
            cond = encode(list(cond), self.config.prompt_len).to(self.device)
        if not isinstance(cond, torch.Tensor) or cond.dim() != 2 or cond.shape[1] != self.config.prompt_len:
            raise DiceError(f"cond must be word ids [B, {self.config.prompt_len}] (dicelib.shapes_model.encode), "
                            f"a list of prompts or None; got {getattr(cond, 'shape', type(cond).__name__)}")
        if cond.shape[0] == 1 and rows > 1:
            cond = cond.expand(rows, -1)
        return cond.long()

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Return x0 logits [B, D, K] for pixels x [B, D] (ids 0..K), noise levels t [B] and prompts."""
        if x.dim() != 2 or x.shape[1] != self.num_positions:
            raise DiceError(f"the shapes model takes x of shape [B, {self.num_positions}], got {list(x.shape)}")
        b, n, p, s = x.shape[0], self.config.image_size, self.config.patch, self.side
        words = self._cond_ids(cond, b)
        if words.shape[0] != b:
            raise DiceError(f"cond has {words.shape[0]} rows but x has {b}")
        angles = t.float().view(-1, 1) * self.freqs * math.pi
        h_t = self.time(torch.cat([angles.sin(), angles.cos()], dim=-1)).unsqueeze(1)  # [B, 1, dim]
        e = self.pixel_embed(x.long()).view(b, n, n, -1).permute(0, 3, 1, 2)  # [B, w, 16, 16]
        h_txt = self.word_embed(words) + self.word_pos  # [B, L, dim]
        pooled = self.stem_time(h_t[:, 0]) + self.stem_words(self.word_embed(words).mean(1))  # [B, w]
        f = self.stem(e + pooled.view(b, -1, 1, 1))
        h_img = self.down(f).flatten(2).transpose(1, 2) + (self.row_pos + self.col_pos).view(s * s, -1)  # [B, P, dim]
        h = self.encoder(torch.cat([h_txt, h_img], dim=1) + h_t)[:, words.shape[1]:]
        g = self.up(self.norm(h)).view(b, s, s, p, p, -1).permute(0, 5, 1, 3, 2, 4).reshape(b, -1, n, n)
        y = self.decode(g + f)  # [B, K, 16, 16]: global layout from the transformer + local evidence
        return y.flatten(2).transpose(1, 2)  # [B, D, K]

    @torch.no_grad()
    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Return x0 logits [B, D, K] (the DiscreteDenoiser entry point; no gradients)."""
        return self.forward(x.to(self.device), t.to(self.device), cond)


def save(model: ShapesDenoiser, path: Path = CHECKPOINT, meta: dict | None = None) -> Path:
    """Return `path` after writing config, float16 weights and metadata atomically (loadable with weights_only=True).

    Weights are stored in float16 (half the size, committed to git); `load` casts them back to
    float32, so evaluate a model after a save/load round trip to report what users get.
    """
    path = Path(path)
    state = {k: (v.half() if v.is_floating_point() else v).detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": "dicelib-shapes-v1", "config": asdict(model.config), "state_dict": state, "meta": meta or {}}
    atomic_write(path, lambda f: torch.save(payload, f), mode="wb")
    return path


def load(path: Path | str = CHECKPOINT, device: str | torch.device = "cpu") -> ShapesDenoiser:
    """Return the trained `shapes` denoiser from `path` (in eval mode, on `device`)."""
    path = Path(path)
    if not path.exists():
        raise DiceError(f"no shapes checkpoint at {path}; train it with `dvc repro train-shapes` "
                        "(or `python -m dicelib.image.train_shapes`)")
    if path.is_dir():
        raise DiceError(f"shapes checkpoint {str(path)!r} is a directory; give a .pt file written by train_shapes")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and torch each raise their own kind for a foreign file
        raise DiceError(f"{path} is not a dicelib shapes checkpoint (format dicelib-shapes-v1): "
                        f"{type(err).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != "dicelib-shapes-v1":
        raise DiceError(f"{path} is not a dicelib shapes checkpoint (format dicelib-shapes-v1)")
    model = ShapesDenoiser(ShapesConfig(**payload["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    model.meta = payload.get("meta", {})
    return model.to(device).eval()
