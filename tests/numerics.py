"""Compare tensors against values recorded on another machine: tokens exactly, floats within a stated tolerance."""

from __future__ import annotations

import torch

# Why floats get a tolerance: latents are differences of log-probabilities of up to about 72 in size, computed by
# softmax and matrix kernels that torch picks by instruction set (AVX-512, AVX2 or the portable `default` one, see
# ATEN_CPU_CAPABILITY) and splits by thread count. Their reductions round in another order, so the same code gives
# float32 values a few ulps apart on another CPU, and the error is absolute at the scale of the log-probabilities
# (a float32 ulp at 64..128 is 7.6e-6), also where a latent itself is near zero. Measured against the recordings:
# up to 7.6e-6 on an AVX2-only EPYC, 1.7e-5 on an AVX-512 Xeon (any thread count, and with the `default` kernels).
# 1e-4 absolute allows about 13 ulps at that scale; any real change to the method moves latents by far more.
# bfloat16 stores round those float32 values to 8 significant bits: a value one float32 ulp either side of a
# bfloat16 rounding boundary lands one bfloat16 ulp (2**-7 relative) away. float64 values (noise levels) are
# computed from integers and a few products: 1e-12.
TOLERANCE = {
    torch.float32: dict(rtol=1e-5, atol=1e-4),
    torch.bfloat16: dict(rtol=2.0**-7, atol=1e-4),
    torch.float64: dict(rtol=1e-12, atol=1e-12),
}


def assert_matches_recorded(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    """Assert `got` has `want`'s dtype and shape; integer and bool tensors (tokens) equal exactly, floats within
    TOLERANCE for their dtype."""
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, want.dtype, got.shape, want.shape)
    if not want.is_floating_point():
        assert torch.equal(got, want), f"{name}: tokens differ at {int((got != want).sum())} of {want.numel()} entries"
        return
    tol = TOLERANCE[want.dtype]
    if not torch.allclose(got, want, **tol):
        worst = float((got.double() - want.double()).abs().max())
        raise AssertionError(f"{name}: {want.dtype} values differ by up to {worst:.3g} (tolerance {tol})")
