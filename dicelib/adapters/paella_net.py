"""Return logits of Paella v3's denoiser: `PaellaNet`, a module whose state_dict loads `paella_v3.pt` as is.

Written from the architecture (Rampas et al., dome272/Paella, MIT) and checked key for key and shape
for shape against the checkpoint's layout (`tests/fixtures/paella/paella_v3_state_dict.json`, 844
tensors). Token ids [B, H, W] are embedded, unshuffled into 2x2 patches and run through a U-shaped
stack of levels; each level repeats a pattern of blocks ("C": ConvNeXt block with global response
norm, "T": FiLM by the noise level r, "A": attention over [image tokens, conditioning tokens]);
levels are joined by 2x2 strided (transposed) convolutions, and the first block of each up level
but the deepest takes the down path's output of its level as a skip input. The conditioning
sequence is [ByT5 states mapped to c_cond..., CLIP pooled embedding mapped to clip_seq_len tokens],
layer-normed. Attention runs through `scaled_dot_product_attention`; optional per-token weights on
the conditioning tokens scale their values, which equals the authors' product of the attention
matrix with the weights (they do not renormalise the rows), and a key mask drops ByT5 padding.
Module names inside the blocks follow the checkpoint's keys, the classes are ours.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DiceError

BLOCK_KINDS = ("C", "T", "A")  # ConvNeXt, timestep FiLM, attention


class ChannelNorm(nn.LayerNorm):
    """Layer norm over the channels of [B, C, H, W] maps (no affine weights in Paella)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, elementwise_affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x [B, C, H, W] normalised over C."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ResponseNorm(nn.Module):
    """Global response normalisation (ConvNeXt V2) of channels-last maps [B, H, W, C]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x [B, H, W, C] plus its response-normalised, scaled and shifted copy."""
        energy = torch.norm(x, p=2, dim=(1, 2), keepdim=True)  # [B, 1, 1, C]
        ratio = energy / (energy.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * ratio) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (over x and an optional skip map) -> norm -> 4x MLP with response norm, plus x."""

    def __init__(self, channels: int, skip_channels: int = 0, kernel_size: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        # groups=channels over channels + skip inputs: each output channel sees its own group of inputs
        self.depthwise = nn.Conv2d(channels + skip_channels, channels, kernel_size=kernel_size,
                                   padding=kernel_size // 2, groups=channels)
        self.norm = ChannelNorm(channels)
        self.channelwise = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), ResponseNorm(4 * channels),
                                         nn.Dropout(dropout), nn.Linear(4 * channels, channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Return the block's output [B, C, H, W] for x [B, C, H, W] and an optional skip map [B, C_skip, H, W]."""
        h = x if skip is None else torch.cat([x, skip], dim=1)
        h = self.norm(self.depthwise(h)).permute(0, 2, 3, 1)  # channels last for the MLP
        return x + self.channelwise(h).permute(0, 3, 1, 2)


class TimestepFiLM(nn.Module):
    """Scale and shift of the channels from the noise level's embedding."""

    def __init__(self, channels: int, r_channels: int) -> None:
        super().__init__()
        self.mapper = nn.Linear(r_channels, 2 * channels)

    def forward(self, x: torch.Tensor, r_emb: torch.Tensor) -> torch.Tensor:
        """Return x [B, C, H, W] * (1 + a) + b with (a, b) = mapper(r_emb [B, c_r])."""
        a, b = self.mapper(r_emb)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + a) + b


class Projections(nn.Module):
    """The q/k/v and output projections of multi-head attention (nn.MultiheadAttention's parameter names)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if heads < 1 or channels % heads:
            raise DiceError(f"attention needs heads >= 1 dividing the width {channels}; got nhead={heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def split_heads(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """Return projection `part` (0 q, 1 k, 2 v) of tokens x [B, L, C] as heads [B, heads, L, C / heads]."""
        c = x.shape[-1]
        rows = slice(part * c, (part + 1) * c)
        y = F.linear(x, self.in_proj_weight[rows], self.in_proj_bias[rows])
        return y.unflatten(-1, (self.heads, c // self.heads)).transpose(1, 2)


class CondTokens:
    """The conditioning tokens of one forward pass, shared by every attention block."""

    def __init__(self, tokens: torch.Tensor, keep: torch.Tensor | None, weights: torch.Tensor | None) -> None:
        self.tokens = tokens  # [B, L, c_cond], layer-normed
        self.keep = keep  # [B, L] bool, False at ByT5 padding (None: no padding)
        self.weights = weights  # [B, L] attention weight per token (None: all 1)


class ImageAttention(nn.Module):
    """Multi-head attention of a map's H*W tokens over keys [its own tokens, given tokens] or the given alone."""

    def __init__(self, channels: int, heads: int, self_attn: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn, self.dropout = self_attn, dropout
        self.attn = Projections(channels, heads)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, keep: torch.Tensor | None = None,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        """Return the attention output [B, C, H, W] of x [B, C, H, W] over kv [B, L, C] (keep, weights: [B, L])."""
        b, c, h, w = x.shape
        queries = x.flatten(2).transpose(1, 2)  # [B, N, C], N = H*W
        if self.self_attn:
            n = queries.shape[1]
            kv = torch.cat([queries, kv], dim=1)  # [B, N + L, C]
            keep = None if keep is None else F.pad(keep, (n, 0), value=True)
            weights = None if weights is None else F.pad(weights, (n, 0), value=1.0)
        q, k, v = self.attn.split_heads(queries, 0), self.attn.split_heads(kv, 1), self.attn.split_heads(kv, 2)
        if weights is not None:  # softmax(q k) @ (w * v) = (softmax(q k) * w) @ v: the authors' weighting
            v = v * weights[:, None, :, None].to(v.dtype)
        mask = None if keep is None else keep[:, None, None, :]  # [B, 1, 1, keys]: True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        out = self.attn.out_proj(out.transpose(1, 2).reshape(b, h * w, c))  # [B, N, C]
        return out.transpose(1, 2).reshape(b, c, h, w)


class CondAttention(nn.Module):
    """Attention of the normed map over the conditioning tokens (and itself, with self_attn), plus x."""

    def __init__(self, channels: int, cond_channels: int, heads: int, self_attn: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = ChannelNorm(channels)
        self.attention = ImageAttention(channels, heads, self_attn, dropout)
        self.kv_mapper = nn.Sequential(nn.SiLU(), nn.Linear(cond_channels, channels))

    def forward(self, x: torch.Tensor, cond: CondTokens) -> torch.Tensor:
        """Return x [B, C, H, W] plus its attention output over the mapped conditioning tokens."""
        return x + self.attention(self.norm(x), self.kv_mapper(cond.tokens), cond.keep, cond.weights)


def r_embedding(r: torch.Tensor, channels: int, max_positions: float = 10000.0) -> torch.Tensor:
    """Return the sinusoidal embedding [B, channels] of noise levels r [B] in [0, 1] (of r * max_positions)."""
    half = channels // 2
    freqs = torch.exp(-math.log(max_positions) / (half - 1) * torch.arange(half, device=r.device).float())
    angles = (r.float() * max_positions)[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(emb, (0, channels % 2))


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(ChannelNorm(c_in), nn.Conv2d(c_in, c_out, kernel_size=2, stride=2))


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(ChannelNorm(c_in), nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2))


class PaellaNet(nn.Module):
    """Paella v3's denoiser: `forward(x [B, H, W], r [B], byt5 [B, L, byt5_embd], clip [B, clip_embd])` -> [B, K, H, W].

    Keyword arguments and defaults are the published class's with `byt5_embd=2560` (ByT5-XL), the
    width of the released checkpoint (the upstream class defaults to 1536, which no release uses),
    so `PaellaNet()` has the state_dict of `paella_v3.pt`. H and W must be multiples of
    patch_size * 2 ** (levels - 1).
    """

    def __init__(self, c_in: int = 256, c_out: int = 256, num_labels: int = 8192, c_r: int = 64, patch_size: int = 2,
                 c_cond: int = 1024, c_hidden: list[int] = (640, 1280, 1280), nhead: list[int] = (-1, 16, 16),
                 blocks: list[int] = (6, 16, 6), level_config: list[str] = ("CT", "CTA", "CTA"), clip_embd: int = 1024,
                 byt5_embd: int = 2560, clip_seq_len: int = 4, kernel_size: int = 3,
                 dropout: float | list[float] = 0.1, self_attn: bool = True) -> None:
        super().__init__()
        levels = len(c_hidden)
        dropout = list(dropout) if isinstance(dropout, (list, tuple)) else [dropout] * levels
        if not levels == len(nhead) == len(blocks) == len(level_config) == len(dropout):
            raise DiceError(f"c_hidden, nhead, blocks, level_config and dropout need one entry per level; got "
                            f"{len(c_hidden)}, {len(nhead)}, {len(blocks)}, {len(level_config)}, {len(dropout)}")
        unknown = sorted(set("".join(level_config)) - set(BLOCK_KINDS))
        if unknown:
            raise DiceError(f"unknown block kinds {unknown} in level_config {list(level_config)}; "
                            f"expected {BLOCK_KINDS}")
        # the constructor's arguments, JSON-ready (Paella.save_pretrained writes them beside the weights)
        self.config = dict(c_in=c_in, c_out=c_out, num_labels=num_labels, c_r=c_r, patch_size=patch_size, c_cond=c_cond,
                           c_hidden=list(c_hidden), nhead=list(nhead), blocks=list(blocks),
                           level_config=list(level_config), clip_embd=clip_embd, byt5_embd=byt5_embd,
                           clip_seq_len=clip_seq_len, kernel_size=kernel_size, dropout=dropout, self_attn=self_attn)
        self.num_labels, self.c_r, self.c_cond, self.clip_seq_len = num_labels, c_r, c_cond, clip_seq_len
        self.patch_size, self.levels = patch_size, levels

        def block(kind: str, level: int, skip: int = 0) -> nn.Module:
            width = c_hidden[level]
            if kind == "C":
                return ConvNeXtBlock(width, skip, kernel_size, dropout[level])
            if kind == "T":
                return TimestepFiLM(width, c_r)
            return CondAttention(width, c_cond, nhead[level], self_attn, dropout[level])

        # conditioning: ByT5 states -> tokens, CLIP pooled embedding -> clip_seq_len tokens each
        self.byt5_mapper = nn.Linear(byt5_embd, c_cond)
        self.clip_mapper = nn.Linear(clip_embd, c_cond * clip_seq_len)
        self.clip_image_mapper = nn.Linear(clip_embd, c_cond * clip_seq_len)
        self.cond_norm = nn.LayerNorm(c_cond, elementwise_affine=False, eps=1e-6)
        # token ids -> normed embeddings -> 2x2 patches (pixel unshuffle) -> level 0 width
        self.in_mapper = nn.Sequential(nn.Embedding(num_labels, c_in),
                                       nn.LayerNorm(c_in, elementwise_affine=False, eps=1e-6))
        self.embedding = nn.Sequential(nn.PixelUnshuffle(patch_size),
                                       nn.Conv2d(c_in * patch_size ** 2, c_hidden[0], kernel_size=1),
                                       ChannelNorm(c_hidden[0]))
        self.down_blocks = nn.ModuleList()
        for level in range(levels):
            stage = nn.ModuleList([_down(c_hidden[level - 1], c_hidden[level])] if level else [])
            stage.extend(block(kind, level) for _ in range(blocks[level]) for kind in level_config[level])
            self.down_blocks.append(stage)
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            stage = nn.ModuleList()
            for rep in range(blocks[level]):
                for pos, kind in enumerate(level_config[level]):
                    # the level's first block takes the down path's map as a skip input (not at the bottom)
                    skip = c_hidden[level] if level < levels - 1 and rep == pos == 0 else 0
                    stage.append(block(kind, level, skip))
            if level:
                stage.append(_up(c_hidden[level], c_hidden[level - 1]))
            self.up_blocks.append(stage)
        # level 0 width -> c_out per token (pixel shuffle back) -> logits over the codebook
        self.clf = nn.Sequential(ChannelNorm(c_hidden[0]),
                                 nn.Conv2d(c_hidden[0], c_out * patch_size ** 2, kernel_size=1),
                                 nn.PixelShuffle(patch_size))
        self.out_mapper = nn.Sequential(ChannelNorm(c_out), nn.Conv2d(c_out, num_labels, kernel_size=1, bias=False))

    @property
    def dtype(self) -> torch.dtype:
        """Return the parameters' dtype (read by `hub.place` to cast only when it differs)."""
        return self.byt5_mapper.weight.dtype

    def condition(self, byt5: torch.Tensor, clip: torch.Tensor | None = None, clip_image: torch.Tensor | None = None,
                  byt5_mask: torch.Tensor | None = None, cond_weights: torch.Tensor | None = None) -> CondTokens:
        """Return the layer-normed conditioning tokens [B, L', c_cond] (ByT5, CLIP, CLIP image) with mask and weights."""
        parts = [self.byt5_mapper(byt5)]
        for emb, mapper in ((clip, self.clip_mapper), (clip_image, self.clip_image_mapper)):
            if emb is not None:
                parts.append(mapper(emb).unflatten(-1, (self.clip_seq_len, self.c_cond)))
        tokens = self.cond_norm(torch.cat(parts, dim=1))
        b, n = tokens.shape[:2]
        keep = None if byt5_mask is None else F.pad(byt5_mask.to(tokens.device, torch.bool), (0, n - byt5.shape[1]),
                                                    value=True)
        if cond_weights is not None and cond_weights.shape[-1] != n:
            raise DiceError(f"cond_weights has {cond_weights.shape[-1]} entries for {n} conditioning tokens "
                            "(ByT5, then clip_seq_len per CLIP embedding)")
        weights = None if cond_weights is None else cond_weights.to(tokens.device, tokens.dtype).expand(b, n)
        return CondTokens(tokens, keep, weights)

    def _run(self, block: nn.Module, x: torch.Tensor, r_emb: torch.Tensor, cond: CondTokens,
             skip: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(block, ConvNeXtBlock):
            return block(x, skip)
        if isinstance(block, TimestepFiLM):
            return block(x, r_emb)
        if isinstance(block, CondAttention):
            return block(x, cond)
        return block(x)  # down/up sampling

    def forward(self, x: torch.Tensor, r: torch.Tensor, byt5: torch.Tensor, clip: torch.Tensor | None = None,
                clip_image: torch.Tensor | None = None, byt5_mask: torch.Tensor | None = None,
                cond_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Return logits [B, num_labels, H, W] for token ids x [B, H, W] at noise levels r [B] in [0, 1].

        byt5: ByT5 last hidden states [B, L, byt5_embd]; clip, clip_image: pooled CLIP embeddings
        [B, clip_embd] or None. byt5_mask [B, L] (True = token, False = padding) lets rows of
        different prompt lengths share a batch, each computing as if alone; cond_weights [B, L'] or
        [L'] scales the attention to each of the L' conditioning tokens (ByT5, then CLIP), None = 1.
        """
        size = self.patch_size * 2 ** (self.levels - 1)
        if x.dim() != 3 or x.shape[1] % size or x.shape[2] % size:
            raise DiceError(f"x must be token ids [B, H, W] with H and W multiples of {size}; got {tuple(x.shape)}")
        cond = self.condition(byt5, clip, clip_image, byt5_mask, cond_weights)
        r_emb = r_embedding(r, self.c_r).to(cond.tokens.dtype)
        h = self.embedding(self.in_mapper(x).permute(0, 3, 1, 2))  # [B, c_hidden[0], H / p, W / p]
        skips = []  # each down level's output, bottom first
        for stage in self.down_blocks:
            for block in stage:
                h = self._run(block, h, r_emb, cond)
            skips.insert(0, h)
        h = skips[0]
        for level, stage in enumerate(self.up_blocks):
            for pos, block in enumerate(stage):
                h = self._run(block, h, r_emb, cond, skips[level] if level and pos == 0 else None)
        return self.out_mapper(self.clf(h))
