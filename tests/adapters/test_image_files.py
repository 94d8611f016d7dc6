"""Image files are read as they are, or refused with one clear DiceError: never silently changed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from dicelib import DiceError
from dicelib.adapters.vq_codec import fit_note, load_image


def test_a_16_bit_grayscale_png_reads_as_its_8_bit_twin(tmp_path):
    gray = (np.arange(256).reshape(16, 16) * 257).astype(np.uint16)  # 0..65535: the full 16-bit range
    Image.fromarray(gray).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    Image.fromarray((gray // 257).astype(np.uint8)).save(tmp_path / "g8.png")
    x16, x8 = load_image(tmp_path / "g16.png"), load_image(tmp_path / "g8.png")
    assert x16.shape == x8.shape == (1, 3, 16, 16)
    assert float((x16 - x8).abs().max()) <= 1 / 255 + 1e-6  # rounding of 16 to 8 bits, not all white
    assert float(x16.min()) == 0.0 and float(x16.mean()) == pytest.approx(0.5, abs=0.01)


def test_a_32_bit_image_outside_16_bits_is_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 70000, dtype=np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(DiceError, match="values in \\[70000, 70000\\]; expected 8- or 16-bit values"):
        load_image(tmp_path / "i32.tif")


@pytest.mark.parametrize("limit", [100, 200])  # 256 pixels: over twice the limit (error) / over the limit (warning)
def test_a_decompression_bomb_is_one_clear_error_without_a_warning(tmp_path, monkeypatch, limit):
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked warning fails the test
        with pytest.raises(DiceError, match=f"is too large to read safely .*expected at most {limit:,} pixels"):
            load_image(tmp_path / "big.png")
        assert fit_note(tmp_path / "big.png", 8) is None  # loading says why
