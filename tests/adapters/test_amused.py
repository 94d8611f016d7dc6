"""aMUSEd adapter: tiny random components, exact reconstruction, pipeline-equivalent guidance, errors."""

from __future__ import annotations

import pytest
import torch

import dicelib
from dicelib.adapters import Amused
from dicelib.adapters.random_components import amused_components, random_amused
from dicelib.errors import DiceError, MissingWeightsError
from dicelib.core.guidance import predict_log_probs


@pytest.fixture(scope="module")
def model() -> Amused:
    return random_amused("tiny", seed=0, device="cpu")


def test_shapes_and_ids(model, images):
    x0 = model.encode_image(images)
    assert x0.shape == (2, model.num_positions) == (2, 64) and x0.dtype == torch.long
    assert int(x0.max()) < model.num_classes == 8
    assert model.mask_id == model.transformer.config.vocab_size - 1  # the scheduler's [MASK] id, outside 0..K-1
    cond = model.encode_prompt(["a cat", "a dog"])
    assert cond["states"].shape[0] == cond["pooled"].shape[0] == 2
    assert not torch.allclose(cond["pooled"][0], cond["pooled"][1])
    assert model.null_cond["pooled"].shape[0] == 1
    x = x0.clone()
    x[:, ::2] = model.mask_id
    logits = model.logits(x, torch.full((2,), 0.5), cond)
    assert logits.shape == (2, 64, model.num_classes) and bool(torch.isfinite(logits).all())
    img = model.decode(x0)
    assert img.shape == (2, 3, 8, 8) and float(img.min()) >= 0 and float(img.max()) <= 1


@pytest.mark.parametrize("noise,pseudo_inverse,store", [("mask", "onehot", "float32"), ("mask", "lai", "none"),
                                                        ("uniform", "lai", "bfloat16")])
def test_image_tokens_invert_edit_reconstructs_exactly(model, images, noise, pseudo_inverse, store):
    x0 = model.encode_image(images)
    cond = model.encode_prompt(["a red cat", "a blue dog"])
    inv = dicelib.invert(model, x0, cond, method="masked", steps=8, noise=noise, pseudo_inverse=pseudo_inverse,
                         cfg_scale=10.0, store=store, generator=torch.Generator().manual_seed(1))
    x = dicelib.edit(model, inv, cond, lambda1=1.0, lambda2=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, x0)
    assert torch.equal(model.decode(x), model.decode(x0))


def test_guidance_matches_the_pipelines_raw_logit_cfg(model, images):
    """dicelib guides log-probs; the pipeline guides raw logits: the same distribution."""
    x = model.encode_image(images)
    x[:, 1::3] = model.mask_id
    cond = model.encode_prompt(["a cat", "a dog"])
    t = torch.zeros(2)
    w = 10.0
    ours = predict_log_probs(model, [(x, t, cond)], w, 1.0)[0]
    c = model.logits(x, t, cond)
    u = model.logits(x, t, {k: v.expand(2, *v.shape[1:]) for k, v in model.null_cond.items()})
    pipeline = torch.log_softmax(u + w * (c - u), dim=-1).clamp(min=-70)
    assert torch.allclose(ours, pipeline, atol=1e-4)


def test_error_paths(model, images):
    x0 = model.encode_image(images)
    cond = model.encode_prompt(["a cat", "a dog"])
    with pytest.raises(DiceError, match="MASK"):
        model.decode(torch.full_like(x0, model.mask_id))
    with pytest.raises(DiceError, match="image tensors"):
        model.encode_image(torch.rand(2, 4, 8, 8))


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError, match="amused/amused-256") as err:
        Amused.from_pretrained("amused/amused-256")
    assert "HF_HUB_OFFLINE=1" in str(err.value)
