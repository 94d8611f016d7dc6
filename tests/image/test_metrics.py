"""Image metrics on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from dicelib.image import metrics as im
from dicelib.errors import DiceError


def test_exact_metrics_on_a_hand_made_case():
    source = np.zeros((1, 4, 4), dtype=int)
    target = source.copy()
    target[0, :2, :2] = 3  # the edit: a 2x2 block
    mask = source != target
    pred = target.copy()
    pred[0, 0, 0] = 0  # one of 4 edited pixels missed
    pred[0, 3, 3] = 5  # one of 12 outside pixels changed
    assert im.token_accuracy(pred, target)[0] == pytest.approx(14 / 16)
    assert im.edit_accuracy(pred, target, mask)[0] == pytest.approx(3 / 4)
    assert im.preservation(pred, source, mask)[0] == pytest.approx(11 / 12)


def test_exact_metrics_edge_cases():
    a = np.arange(8).reshape(2, 4)
    assert im.token_accuracy(a, a).tolist() == [1.0, 1.0]
    empty = np.zeros((2, 4), dtype=bool)
    assert np.isnan(im.edit_accuracy(a, a, empty)).all()  # nothing to edit: undefined, not 0 or 1
    assert im.preservation(a, a, empty).tolist() == [1.0, 1.0]
    assert np.isnan(im.preservation(a, a, ~empty)).all()
    with pytest.raises(DiceError, match="same shape"):
        im.token_accuracy(a, a[:1])


def test_pixel_metrics_known_values():
    ref = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    pred = ref.copy()
    pred[0, 0, 0] = 255  # one pixel fully white: MSE = 3 / (8*8*3) on [0, 1]
    assert im.mse(pred, ref)[0] == pytest.approx(1 / 64)
    assert im.psnr(pred, ref)[0] == pytest.approx(10 * np.log10(64))
    assert im.psnr(ref, ref)[0] == im.PSNR_CAP
    assert im.ssim(ref, ref)[0] == pytest.approx(1.0)
    assert im.ssim(pred, ref)[0] < 1.0


def test_outside_mask_variants_ignore_the_masked_pixels():
    ref = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    pred = ref.copy()
    pred[0, :4, :4] = 200  # changed region
    mask = np.zeros((1, 8, 8), dtype=bool)
    mask[0, :4, :4] = True
    assert im.mse(pred, ref, mask, outside=True)[0] == 0.0
    assert im.psnr(pred, ref, mask, outside=True)[0] == im.PSNR_CAP
    assert im.mse(pred, ref)[0] > 0
    # SSIM outside: windows near the edited block still see it, so below 1 but above the whole-image value
    inside = im.ssim(pred, ref)[0]
    outside = im.ssim(pred, ref, mask, outside=True)[0]
    assert inside < outside <= 1.0
    m = im.pixel_metrics(pred, ref, mask)
    assert set(m) == {"psnr", "mse", "ssim", "psnr_outside", "mse_outside", "ssim_outside"}


def test_pixel_metrics_reject_token_grids():
    with pytest.raises(DiceError, match="RGB"):
        im.mse(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))
