"""Return VAR's tokenizer (`VQVAE`): a VQ autoencoder with a multi-scale residual quantizer, state_dict-compatible
with the official `vae_ch160v4096z32.pth`.

The encoder and decoder are the latent-diffusion VQ-f16 convolutional stacks (channel multipliers
1, 1, 2, 2, 4, two residual blocks per level, self-attention at the lowest level and in the middle,
GroupNorm of 32 groups). The quantizer turns the feature map f [B, Cvae, H, W] into one token map per
scale, coarse to fine: scale k's tokens are the nearest codebook entries (squared distance) of the
residual f - f_hat area-downsampled to pn_k x pn_k (the finest scale is not resampled); their
embeddings are upsampled bicubically to H x W, passed through phi_k (a 3x3 conv mixed 1:1 with its
input; `share_quant_resi` = 4 convs shared by nearness of k / (S - 1) to fixed ticks) and added to
f_hat. The decoder reads f_hat. Written from the published architecture with its constructor
arguments and parameter names; `ch_mult` and `num_res_blocks` (not published arguments, the
published values by default) let tests build small instances.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DiceError
from .var_net import PATCH_NUMS


def group_norm(channels: int) -> nn.GroupNorm:
    """Return the VAE's normalisation: GroupNorm of 32 groups, eps 1e-6, affine."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Two GroupNorm-SiLU-conv layers on a residual path (1x1 conv shortcut when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2, self.conv2 = group_norm(out_channels), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.conv1(F.silu(self.norm1(x)))
        return self.nin_shortcut(x) + self.conv2(F.silu(self.norm2(h)))


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map, on a residual path."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.C = channels
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, _, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.C, h * w).unbind(1)  # each [B, C, HW]
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * self.C ** -0.5, dim=2)  # [B, HW_q, HW_k]
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, self.C, h, w)
        return x + self.proj_out(out)


class Downsample2x(nn.Module):
    """A stride-2 3x3 conv after padding one pixel right and below."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2x(nn.Module):
    """Nearest 2x upsampling then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _level(blocks: list[nn.Module], attn: list[nn.Module]) -> nn.Module:
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attn)
    return level


def _middle(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = ResnetBlock(channels, channels), AttnBlock(channels), ResnetBlock(channels, channels)
    return mid


class Encoder(nn.Module):
    """Image [B, 3, H, W] in [-1, 1] -> features [B, z_channels, H / 2^(levels-1), W / 2^(levels-1)]."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(ch_mult):
            last = i == len(ch_mult) - 1
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, ch * mult))
                block_in = ch * mult
            level = _level(blocks, [AttnBlock(block_in) for _ in range(num_res_blocks)] if last else [])
            if not last:
                level.downsample = Downsample2x(block_in)
            self.down.append(level)
        self.mid = _middle(block_in)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.conv_in(x)
        for level in self.down:
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[i](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Features [B, z_channels, h, w] -> image [B, 3, h 2^(levels-1), w 2^(levels-1)] (unclamped)."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int) -> None:
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _middle(block_in)
        levels = []
        for i in reversed(range(len(ch_mult))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, ch * ch_mult[i]))
                block_in = ch * ch_mult[i]
            level = _level(blocks, [AttnBlock(block_in) for _ in blocks] if i == len(ch_mult) - 1 else [])
            if i != 0:
                level.upsample = Upsample2x(block_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)  # index = resolution level, finest first (computed coarse to fine)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[i](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Phi(nn.Conv2d):
    """phi(h) = (1 - ratio) h + ratio conv3x3(h): the quantizer's residual refinement of an upsampled scale."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__(channels, channels, 3, padding=1)
        self.resi_ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return h.mul(1 - self.resi_ratio) + super().forward(h).mul_(self.resi_ratio)


def _ticks(n: int) -> list[float]:
    """Return the published positions in [0, 1] of n shared phi convs (1/(3n) .. 1 - 1/(3n) for 4, else 1/(2n) ..)."""
    lo = 1 / 3 / n if n == 4 else 1 / 2 / n
    return [lo + (1 - 2 * lo) * i / (n - 1) for i in range(n)] if n > 1 else [0.5]


class PhiPartiallyShared(nn.Module):
    """`share_quant_resi` >= 2 convs; scale position r in [0, 1] uses the one whose tick is nearest."""

    def __init__(self, convs: list[nn.Module]) -> None:
        super().__init__()
        self.qresi_ls = nn.ModuleList(convs)
        self.ticks = _ticks(len(convs))

    def __getitem__(self, at: float) -> nn.Module:
        gaps = [abs(t - at) for t in self.ticks]
        return self.qresi_ls[gaps.index(min(gaps))]


class PhiShared(nn.Module):
    """One conv for every scale (`share_quant_resi` = 1)."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.qresi = conv

    def __getitem__(self, at: float) -> nn.Module:
        return self.qresi


class PhiNonShared(nn.ModuleList):
    """One conv per scale (`share_quant_resi` = 0)."""

    def __init__(self, convs: list[nn.Module]) -> None:
        super().__init__(convs)
        self.ticks = _ticks(len(convs))

    def __getitem__(self, at: float) -> nn.Module:  # type: ignore[override]
        gaps = [abs(t - at) for t in self.ticks]
        return super().__getitem__(gaps.index(min(gaps)))


class VectorQuantizer2(nn.Module):
    """The multi-scale residual quantizer: one codebook [V, Cvae], the scales `v_patch_nums`, the phi convs."""

    def __init__(self, vocab_size: int, Cvae: int, v_patch_nums: Sequence[int], quant_resi: float = 0.5,  # noqa: N803
                 share_quant_resi: int = 4) -> None:
        super().__init__()
        self.vocab_size, self.Cvae, self.v_patch_nums = vocab_size, Cvae, tuple(v_patch_nums)

        def phi() -> nn.Module:
            return Phi(Cvae, quant_resi) if abs(quant_resi) > 1e-6 else nn.Identity()

        if share_quant_resi == 0:
            self.quant_resi = PhiNonShared([phi() for _ in self.v_patch_nums])
        elif share_quant_resi == 1:
            self.quant_resi = PhiShared(phi())
        else:
            self.quant_resi = PhiPartiallyShared([phi() for _ in range(share_quant_resi)])
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.v_patch_nums), vocab_size))  # training statistic
        self.embedding = nn.Embedding(vocab_size, Cvae)

    def phi(self, si: int) -> nn.Module:
        """Return the phi conv of scale index si."""
        n = len(self.v_patch_nums)
        return self.quant_resi[si / (n - 1) if n > 1 else 0.0]

    def scale_residual(self, idx_Bl: torch.Tensor, si: int, size: tuple[int, int]) -> torch.Tensor:
        """Return phi_si(upsampled embeddings of scale si's ids [B, pn^2]): its term of f_hat [B, Cvae, H, W]."""
        pn = self.v_patch_nums[si]
        if idx_Bl.dim() != 2 or idx_Bl.shape[1] != pn * pn:
            raise DiceError(f"scale {si} takes token ids [B, {pn * pn}] ({pn}x{pn}); got shape {tuple(idx_Bl.shape)}")
        h = self.embedding(idx_Bl).transpose(1, 2).reshape(idx_Bl.shape[0], self.Cvae, pn, pn)
        if (pn, pn) != tuple(size):
            h = F.interpolate(h, size=size, mode="bicubic")
        return self.phi(si)(h.contiguous())

    def f_to_idxBl(self, f_BChw: torch.Tensor) -> list[torch.Tensor]:
        """Return the token maps [B, pn^2] (row-major), coarse to fine, of the feature map f [B, Cvae, H, W]."""
        b, c, h, w = f_BChw.shape
        if (h, w) != (self.v_patch_nums[-1],) * 2:
            raise DiceError(f"the feature map is {h}x{w} but the finest scale is {self.v_patch_nums[-1]}")
        rest, f_hat, maps = f_BChw.detach().clone(), torch.zeros_like(f_BChw), []
        codes = self.embedding.weight.data
        for si, pn in enumerate(self.v_patch_nums):
            z = rest if si == len(self.v_patch_nums) - 1 else F.interpolate(rest, size=(pn, pn), mode="area")
            z_NC = z.permute(0, 2, 3, 1).reshape(-1, c)
            dist = torch.sum(z_NC.square(), dim=1, keepdim=True) + torch.sum(codes.square(), dim=1)
            dist.addmm_(z_NC, codes.T, alpha=-2, beta=1)  # squared distances [N, V]
            idx = torch.argmin(dist, dim=1).reshape(b, pn * pn)
            term = self.scale_residual(idx, si, (h, w))
            f_hat.add_(term)
            rest.sub_(term)
            maps.append(idx)
        return maps


class VQVAE(nn.Module):
    """VAR's tokenizer: `img_to_idxBl(img in [-1, 1]) -> token maps`, `idxBl_to_var_input`, `fhat_to_img`."""

    def __init__(self, vocab_size: int = 4096, z_channels: int = 32, ch: int = 128, dropout: float = 0.0,
                 beta: float = 0.25, using_znorm: bool = False, quant_conv_ks: int = 3, quant_resi: float = 0.5,
                 share_quant_resi: int = 4, default_qresi_counts: int = 0, v_patch_nums: Sequence[int] = PATCH_NUMS,
                 test_mode: bool = True, ch_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 2) -> None:
        super().__init__()
        if using_znorm or default_qresi_counts or dropout:
            raise DiceError("VQVAE here supports the released tokenizer's using_znorm=False, default_qresi_counts=0 "
                            f"and dropout=0; got {using_znorm}, {default_qresi_counts}, {dropout}")
        self.config = dict(vocab_size=vocab_size, z_channels=z_channels, ch=ch, quant_conv_ks=quant_conv_ks,
                           quant_resi=quant_resi, share_quant_resi=share_quant_resi, v_patch_nums=list(v_patch_nums),
                           ch_mult=list(ch_mult), num_res_blocks=num_res_blocks)
        self.V = self.vocab_size = vocab_size
        self.Cvae = z_channels
        self.beta = beta
        self.downsample = 2 ** (len(ch_mult) - 1)
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, z_channels)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels)
        self.quantize = VectorQuantizer2(vocab_size, z_channels, v_patch_nums, quant_resi, share_quant_resi)
        self.quant_conv = nn.Conv2d(z_channels, z_channels, quant_conv_ks, padding=quant_conv_ks // 2)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, quant_conv_ks, padding=quant_conv_ks // 2)
        if test_mode:
            self.eval()
            self.requires_grad_(False)

    @property
    def v_patch_nums(self) -> tuple[int, ...]:
        """Return the scales' sides, coarse to fine."""
        return self.quantize.v_patch_nums

    def img_to_idxBl(self, inp_img_no_grad: torch.Tensor) -> list[torch.Tensor]:
        """Return the token maps [B, pn^2] per scale of images [B, 3, H, W] in [-1, 1]."""
        return self.quantize.f_to_idxBl(self.quant_conv(self.encoder(inp_img_no_grad)))

    def idxBl_to_fhat(self, ms_idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor:  # noqa: N802
        """Return f_hat [B, Cvae, H, W]: the sum of the scales' phi-refined upsampled embeddings."""
        side = self.v_patch_nums[-1]
        f_hat = torch.zeros(ms_idx_Bl[0].shape[0], self.Cvae, side, side, device=ms_idx_Bl[0].device)
        for si, idx in enumerate(ms_idx_Bl):
            f_hat = f_hat + self.quantize.scale_residual(idx, si, (side, side))
        return f_hat

    def idxBl_to_var_input(self, gt_ms_idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor | None:  # noqa: N802
        """Return the transformer's teacher-forcing input [B, L - first_l, Cvae]: f_hat after each scale, area-downsampled
        to the next scale's grid (None for a single scale)."""
        side, pns = self.v_patch_nums[-1], self.v_patch_nums
        b = gt_ms_idx_Bl[0].shape[0]
        f_hat = torch.zeros(b, self.Cvae, side, side, device=gt_ms_idx_Bl[0].device)
        nexts = []
        for si in range(min(len(gt_ms_idx_Bl), len(pns) - 1)):
            f_hat = f_hat + self.quantize.scale_residual(gt_ms_idx_Bl[si], si, (side, side))
            nexts.append(self.next_input(f_hat, si + 1))
        return torch.cat(nexts, dim=1) if nexts else None

    def next_input(self, f_hat: torch.Tensor, si: int) -> torch.Tensor:
        """Return f_hat [B, Cvae, H, W] area-downsampled to scale si's grid as tokens [B, pn^2, Cvae]."""
        pn = self.v_patch_nums[si]
        small = f_hat if pn == f_hat.shape[-1] else F.interpolate(f_hat, size=(pn, pn), mode="area")
        return small.reshape(f_hat.shape[0], self.Cvae, -1).transpose(1, 2)

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Return images [B, 3, H, W] in [-1, 1] decoded from f_hat."""
        return self.decoder(self.post_quant_conv(f_hat)).clamp_(-1, 1)
