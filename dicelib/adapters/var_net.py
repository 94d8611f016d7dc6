"""Return VAR's next-scale transformer (`VARNet`), state_dict-compatible with the official `var_d*.pth` files.

VAR (Tian et al. 2024; FoundationVision/VAR, MIT) predicts every token of scale k in parallel from
the class and the image so far. Its input is one token sequence over all scales (L = sum of pn^2):
scale 0 is the class embedding plus a learned start position; scale k > 0 is the quantizer's f_hat
after scales < k, area-downsampled to scale k's grid and embedded linearly. Level and position
embeddings are added; attention is block-causal (a token sees its own scale and every coarser
one). Each block is AdaLN: LayerNorm without affine, scaled and shifted by a linear map of the
class embedding, and gated. With `attn_l2_norm` (the released models) queries and keys are
L2-normalised and scaled by a learned per-head factor (at most 100). Written from the published
architecture with its constructor arguments, defaults and parameter names, so the released
checkpoints load with `strict=True`; the released models are depth d, width 64 d, d heads.

`forward(label_B, x_BLCv_wo_first_l)` returns the teacher-forced logits as the published `forward`
computes them with label dropout off (the published one replaces 10 % of labels by the null class
even in eval mode). `run` is the same computation over any run of whole scales given the keys and
values of the coarser ones: the KV-cached path the adapter uses.
"""

from __future__ import annotations

import math
from itertools import accumulate
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DiceError

PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)  # the released models' scales (256 px, 16x16 finest)
MAX_SCALE_MUL = float(torch.tensor(100.0).log())  # the published clamp of the per-head attention scale, float32
KV = tuple[torch.Tensor, torch.Tensor]  # one block's keys and values [B, heads, length, head_dim]


class SharedAdaLin(nn.Linear):
    """A linear map of the class embedding giving the six AdaLN vectors shared by all blocks: [B, 1, 6, C]."""

    def forward(self, cond_BD: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return super().forward(cond_BD).view(-1, 1, 6, self.weight.shape[0] // 6)


class SelfAttention(nn.Module):
    """Multi-head self-attention with VAR's q/v biases (no k bias) and optional L2-normalised queries and keys."""

    def __init__(self, embed_dim: int, num_heads: int, attn_l2_norm: bool) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise DiceError(f"embed_dim {embed_dim} must be a multiple of num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.attn_l2_norm = attn_l2_norm
        if attn_l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), 4.0).log())
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("zero_k_bias", torch.zeros(embed_dim))
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None, past: KV | None = None
                ) -> tuple[torch.Tensor, KV]:
        """Return (output [B, L, C], this call's keys and values after `past`'s) for x [B, L, C]."""
        b, length, c = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(b, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, c]
        if self.attn_l2_norm:
            q = F.normalize(q, dim=-1).mul(self.scale_mul_1H11.clamp_max(MAX_SCALE_MUL).exp())
            k = F.normalize(k, dim=-1)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, length, c)), (k, v)


class FFN(nn.Module):
    """The blocks' MLP: fc1, tanh-approximated GELU, fc2."""

    def __init__(self, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(embed_dim, hidden), nn.Linear(hidden, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class AdaLNSelfAttn(nn.Module):
    """One transformer block: AdaLN-modulated attention and MLP, each gated, on residual paths."""

    def __init__(self, embed_dim: int, cond_dim: int, num_heads: int, mlp_ratio: float, norm_eps: float,
                 shared_aln: bool, attn_l2_norm: bool) -> None:
        super().__init__()
        self.C = embed_dim
        self.attn = SelfAttention(embed_dim, num_heads, attn_l2_norm)
        self.ffn = FFN(embed_dim, round(embed_dim * mlp_ratio))
        self.ln_wo_grad = nn.LayerNorm(embed_dim, eps=norm_eps, elementwise_affine=False)
        self.shared_aln = shared_aln
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, embed_dim) / embed_dim ** 0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * embed_dim))

    def forward(self, x: torch.Tensor, cond_BD: torch.Tensor, attn_bias: torch.Tensor | None,
                past: KV | None = None) -> tuple[torch.Tensor, KV]:
        """Return (x [B, L, C] after the block, the attention's keys and values)."""
        if self.shared_aln:
            mods = (self.ada_gss + cond_BD).unbind(2)
        else:
            mods = self.ada_lin(cond_BD).view(-1, 1, 6, self.C).unbind(2)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = mods
        h, kv = self.attn(self.ln_wo_grad(x).mul(scale1.add(1)).add_(shift1), attn_bias, past)
        x = x + h.mul_(gamma1)
        x = x + self.ffn(self.ln_wo_grad(x).mul(scale2.add(1)).add_(shift2)).mul(gamma2)
        return x, kv


class AdaLNBeforeHead(nn.Module):
    """The final AdaLN before the classifier head: LayerNorm scaled and shifted by the class embedding."""

    def __init__(self, embed_dim: int, cond_dim: int, norm_eps: float) -> None:
        super().__init__()
        self.C = embed_dim
        self.ln_wo_grad = nn.LayerNorm(embed_dim, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * embed_dim))

    def forward(self, x_BLC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:  # noqa: D102
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.C).unbind(2)
        return self.ln_wo_grad(x_BLC).mul(scale.add(1)).add_(shift)


class VARNet(nn.Module):
    """VAR's transformer: `forward(label_B [B], x_BLCv_wo_first_l [B, L - first_l, Cvae]) -> logits [B, L, V]`."""

    def __init__(self, vocab_size: int = 4096, Cvae: int = 32, num_classes: int = 1000, depth: int = 16,  # noqa: N803
                 embed_dim: int = 1024, num_heads: int = 16, mlp_ratio: float = 4.0, norm_eps: float = 1e-6,
                 shared_aln: bool = False, attn_l2_norm: bool = True, patch_nums: Sequence[int] = PATCH_NUMS) -> None:
        super().__init__()
        patch_nums = tuple(int(p) for p in patch_nums)
        if not patch_nums or any(p < 1 for p in patch_nums):
            raise DiceError(f"patch_nums must be positive scale sides, coarse to fine; got {patch_nums!r}")
        self.config = dict(vocab_size=vocab_size, Cvae=Cvae, num_classes=num_classes, depth=depth,
                           embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, norm_eps=norm_eps,
                           shared_aln=shared_aln, attn_l2_norm=attn_l2_norm, patch_nums=list(patch_nums))
        self.V, self.Cvae, self.C, self.num_classes, self.depth = vocab_size, Cvae, embed_dim, num_classes, depth
        self.patch_nums = patch_nums
        self.L = sum(p * p for p in patch_nums)
        self.first_l = patch_nums[0] ** 2
        ends = list(accumulate(p * p for p in patch_nums))
        self.begin_ends = [(e - p * p, e) for e, p in zip(ends, patch_nums)]  # each scale's slice of the sequence

        init_std = math.sqrt(1 / embed_dim / 3)
        self.word_embed = nn.Linear(Cvae, embed_dim)
        self.class_emb = nn.Embedding(num_classes + 1, embed_dim)  # the last row is the null (unconditional) class
        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, embed_dim))
        self.pos_1LC = nn.Parameter(torch.empty(1, self.L, embed_dim))
        self.lvl_embed = nn.Embedding(len(patch_nums), embed_dim)
        for w in (self.class_emb.weight, self.pos_start, self.pos_1LC, self.lvl_embed.weight):
            nn.init.trunc_normal_(w.data, mean=0, std=init_std)
        self.shared_ada_lin = (nn.Sequential(nn.SiLU(), SharedAdaLin(embed_dim, 6 * embed_dim)) if shared_aln
                               else nn.Identity())
        self.blocks = nn.ModuleList([AdaLNSelfAttn(embed_dim, embed_dim, num_heads, mlp_ratio, norm_eps, shared_aln,
                                                   attn_l2_norm) for _ in range(depth)])
        level = torch.cat([torch.full((p * p,), i) for i, p in enumerate(patch_nums)]).view(1, self.L, 1)
        self.register_buffer("lvl_1L", level.transpose(1, 2)[:, 0].contiguous())  # [1, L]: each token's scale
        mask = torch.where(level >= level.transpose(1, 2), 0.0, -torch.inf).reshape(1, 1, self.L, self.L)
        self.register_buffer("attn_bias_for_masking", mask.contiguous())  # block-causal, additive
        self.head_nm = AdaLNBeforeHead(embed_dim, embed_dim, norm_eps)
        self.head = nn.Linear(embed_dim, vocab_size)

    @property
    def dtype(self) -> torch.dtype:
        """Return the dtype of the weights."""
        return self.head.weight.dtype

    def class_embedding(self, label_B: torch.Tensor) -> torch.Tensor:
        """Return the class embeddings [B, C] of labels [B] (num_classes = the null class); others -> DiceError."""
        label_B = label_B.long().reshape(-1)
        if label_B.numel() and (int(label_B.min()) < 0 or int(label_B.max()) > self.num_classes):
            raise DiceError(f"class labels must be in 0..{self.num_classes} ({self.num_classes}: the null class); "
                            f"got {label_B.tolist()}")
        return self.class_emb(label_B)

    def inputs(self, cond_BD: torch.Tensor, x_BlCv: torch.Tensor | None, first: int, stop: int) -> torch.Tensor:
        """Return the embedded input tokens [B, l, C] of scales first..stop-1.

        x_BlCv [B, l', Cvae] holds the next-scale inputs (f_hat area-downsampled) of the scales among
        them that are not the first (none for a run of scale 0 alone: None).
        """
        begin, end = self.begin_ends[first][0], self.begin_ends[stop - 1][1]
        lvl_pos = self.lvl_embed(self.lvl_1L[:, begin:end]) + self.pos_1LC[:, begin:end]  # [1, l, C]
        parts = []
        if first == 0:
            b = cond_BD.shape[0]
            parts.append(cond_BD.unsqueeze(1).expand(b, self.first_l, -1) + self.pos_start.expand(b, -1, -1))
        if x_BlCv is not None and x_BlCv.shape[1]:
            parts.append(self.word_embed(x_BlCv.to(self.dtype)))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        if x.shape[1] != end - begin:
            raise DiceError(f"scales {first}..{stop - 1} take {end - begin} input tokens; got {x.shape[1]}")
        return x + lvl_pos

    def run(self, label_B: torch.Tensor, x_BlCv: torch.Tensor | None, first: int, stop: int,
            past: list[KV] | None = None) -> tuple[torch.Tensor, list[KV]]:
        """Return (logits [B, l, V] of scales first..stop-1, every block's keys and values of scales 0..stop-1).

        `past` holds each block's keys and values of scales 0..first-1 (None when first = 0).
        """
        if not 0 <= first < stop <= len(self.patch_nums):
            raise DiceError(f"scales {first}..{stop - 1} are not a run of this model's {len(self.patch_nums)} scales")
        if (past is None) != (first == 0):
            raise DiceError("give the keys and values of the coarser scales exactly when the run starts past scale 0")
        cond_BD = self.class_embedding(label_B)
        x = self.inputs(cond_BD, x_BlCv, first, stop)
        begin, end = self.begin_ends[first][0], self.begin_ends[stop - 1][1]
        attn_bias = self.attn_bias_for_masking[:, :, begin:end, :end].to(x.dtype)
        cond = self.shared_ada_lin(cond_BD)
        kvs = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cond, attn_bias, None if past is None else past[i])
            kvs.append(kv)
        return self.head(self.head_nm(x.float(), cond_BD.float()).float()).float(), kvs

    def forward(self, label_B: torch.Tensor, x_BLCv_wo_first_l: torch.Tensor) -> torch.Tensor:
        """Return the teacher-forced logits [B, L, V] for labels [B] and next-scale inputs [B, L - first_l, Cvae].

        As the published `forward` with label dropout off; a shorter input covering whole scales gives
        the logits of those scales.
        """
        length = self.first_l + x_BLCv_wo_first_l.shape[1]
        stop = next((i + 1 for i, (_, e) in enumerate(self.begin_ends) if e == length), None)
        if stop is None:
            raise DiceError(f"x_BLCv_wo_first_l has {x_BLCv_wo_first_l.shape[1]} tokens: not whole scales of "
                            f"{self.patch_nums} after the first ({self.L - self.first_l} for all)")
        return self.run(label_B, x_BLCv_wo_first_l, 0, stop)[0]
