"""Optional-weight metrics: computed with tiny random CLIP / DINO backbones, reported absent without weights."""

from __future__ import annotations

import sys

import pytest
import torch

from dicelib.adapters.random_components import char_tokenizer
from dicelib.piebench.metrics import PerceptualMetrics, _load_lpips, scaled


@pytest.fixture(scope="module")
def tiny() -> PerceptualMetrics:
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    torch.manual_seed(0)
    dino = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                              image_size=32, patch_size=8), add_pooling_layer=False)
    text = dict(hidden_size=16, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1, vocab_size=128,
                projection_dim=8, max_position_embeddings=16)
    vision = dict(hidden_size=16, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1, image_size=32,
                  patch_size=8, projection_dim=8)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
    mean_abs = lambda a, b: (a - b).abs().mean(dim=(1, 2, 3))  # a stand-in perceptual distance
    return PerceptualMetrics(clip, char_tokenizer(16), dino, mean_abs)


@pytest.fixture(scope="module")
def pair():
    gen = torch.Generator().manual_seed(0)
    source = torch.rand(2, 3, 40, 40, generator=gen)
    mask = torch.zeros(2, 40, 40)
    mask[:, 8:24, 8:24] = 1
    edited = source.clone()
    edited[:, :, 8:24, 8:24] = torch.rand(2, 3, 16, 16, generator=gen)  # changed inside the mask only
    return source, edited, mask


def test_metrics_compute_with_tiny_backbones(tiny, pair):
    source, edited, mask = pair
    out = tiny.compute(source, edited, ["a cat", "a dog"], mask)
    assert set(out) == {"clip_whole", "clip_edited", "structure", "lpips"}
    assert all(v is not None and len(v) == 2 for v in out.values())
    assert all(0 <= v <= 100 for v in out["clip_whole"] + out["clip_edited"])
    assert out["clip_whole"] != out["clip_edited"]  # the region crop changes what CLIP sees
    assert out["lpips"] == [0.0, 0.0]  # background untouched -> zero distance outside the mask
    assert tiny.lpips(source, edited)[0] > 0
    assert tiny.structure_distance(source, source) == [0.0, 0.0]
    assert min(out["structure"]) > 0
    assert tiny.absent == {}


def test_absent_weights_are_reported_absent_never_zero(tmp_path, monkeypatch, pair):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "lpips", None)  # as on this project's machines: not installed
    pm = PerceptualMetrics.from_cache(device="cpu")
    assert set(pm.absent) == {"clip", "structure", "lpips"}
    assert "openai/clip-vit-large-patch14" in pm.absent["clip"] and "lpips" in pm.absent["lpips"]
    source, edited, mask = pair
    assert pm.compute(source, edited, ["a", "b"], mask) == {"clip_whole": None, "clip_edited": None,
                                                             "structure": None, "lpips": None}


def test_lpips_needs_the_package_and_its_backbone(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)
    fn, why = _load_lpips("alex")
    assert fn is None and "torchvision" in why


def test_scaling_follows_the_paper():
    assert scaled("lpips", 0.05290) == pytest.approx(52.90)
    assert scaled("structure", 0.01134) == pytest.approx(11.34)
    assert scaled("clip_whole", 23.79) == pytest.approx(23.79)
    assert scaled("structure", None) is None
