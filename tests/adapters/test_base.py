"""Image adapters' shared base: diffusers pipelines' own components, component names, missing text encoder."""

from __future__ import annotations

import pytest
import torch

import dicelib
from dicelib.adapters import Amused, VQDiffusion
from dicelib.adapters.base import VQImageAdapter
from dicelib.adapters.random_components import (
    amused_components,
    random_amused,
    random_paella,
    random_vq_diffusion,
    vq_diffusion_components,
)
from dicelib.errors import DiceError


def _pipeline(adapter: type) -> object:
    """Return the diffusers pipeline of `adapter` built from tiny random components (diffusers' names)."""
    from diffusers import AmusedPipeline, VQDiffusionPipeline

    if adapter is Amused:
        return AmusedPipeline(**amused_components("tiny", seed=3))
    parts = vq_diffusion_components("tiny", seed=3)
    parts["learned_classifier_free_sampling_embeddings"] = parts.pop("learned_embeddings")
    return VQDiffusionPipeline(**parts)


@pytest.mark.parametrize("adapter,opts", [(Amused, {"steps": 8, "noise": "mask"}), (VQDiffusion, {})])
def test_from_pipeline_components_reconstructs_exactly(adapter, opts, images):
    pipe = _pipeline(adapter)
    model = adapter.from_components(**pipe.components, device="cpu")
    assert issubclass(adapter, VQImageAdapter) and model.transformer is pipe.transformer
    x0 = model.encode_image(images)
    cond = model.encode_prompt(["a red cat", "a blue dog"])
    inv = dicelib.invert(model, x0, cond, method=model.method, cfg_scale=model.default_cfg,
                         generator=torch.Generator().manual_seed(1), **opts)
    assert torch.equal(dicelib.reconstruct(model, inv), x0)


def test_vq_diffusion_pipeline_keeps_its_learned_null_condition():
    pipe = _pipeline(VQDiffusion)
    model = VQDiffusion.from_components(**pipe.components, device="cpu")
    assert model.learned_embeddings is pipe.learned_classifier_free_sampling_embeddings
    assert torch.equal(model.null_cond[0], pipe.learned_classifier_free_sampling_embeddings.embeddings.detach())
    assert model.null_cond is model.null_cond  # computed once


@pytest.mark.parametrize("build,foreign,kind", [(random_amused, torch.zeros(2, 4, 8), "dicts"),
                                                (random_vq_diffusion, ["a cat", "a dog"], "text states"),
                                                (random_paella, torch.zeros(2, 4, 8), "Paella conditions are")])
def test_logits_reject_other_token_counts_and_foreign_conditions(build, foreign, kind, images):
    model = build("tiny", device="cpu")
    x0, cond = model.encode_image(images), model.encode_prompt(["a cat", "a dog"])
    with pytest.raises(DiceError, match=f"{model.num_positions} positions"):
        model.logits(x0[:, :5], torch.zeros(2), cond)
    with pytest.raises(DiceError, match=kind):
        model.logits(x0, torch.zeros(2), foreign)


@pytest.mark.parametrize("adapter,parts", [(Amused, amused_components), (VQDiffusion, vq_diffusion_components)])
def test_unknown_or_repeated_component_names_are_errors(adapter, parts):
    with pytest.raises(DiceError, match=r"'safety_checker'.*accepted: .*transformer"):
        adapter.from_components(**parts("tiny"), safety_checker=None)
    if adapter is VQDiffusion:
        with pytest.raises(DiceError, match="learned_embeddings' twice"):
            adapter.from_components(**parts("tiny"), learned_classifier_free_sampling_embeddings=None)


def test_without_text_encoder_prompts_are_an_error_but_learned_null_works():
    vq = random_vq_diffusion("tiny", device="cpu", text=False)
    with pytest.raises(DiceError, match=r"without a text encoder/tokenizer; pass embeddings \[B, L, H\]"):
        vq.encode_prompt("a cat")
    assert vq.null_cond.shape[0] == 1  # the learned embedding needs no text encoder
    amused = random_amused("tiny", device="cpu", text=False)
    with pytest.raises(DiceError, match="without a text encoder/tokenizer; pass embeddings {"):
        _ = amused.null_cond  # aMUSEd's null condition is the encoded empty prompt


@pytest.mark.parametrize("adapter,parts,level", [(Amused, amused_components, 0.0), (VQDiffusion, vq_diffusion_components, 0.3)])
def test_from_pretrained_assembles_saved_components(adapter, parts, level, tmp_path, images):
    """A snapshot folder with one subfolder per diffusers component loads as the same model."""
    components = parts("tiny", seed=7)
    for sub in adapter.subfolders:
        components[adapter.aliases.get(sub, sub)].save_pretrained(tmp_path / sub)
    loaded = adapter.from_pretrained(tmp_path, device="cpu")
    direct = adapter.from_components(**components, device="cpu")
    x0 = direct.encode_image(images)
    assert torch.equal(loaded.encode_image(images), x0)
    cond, t = loaded.encode_prompt(["a cat", "a dog"]), torch.full((2,), level)
    assert torch.allclose(loaded.logits(x0, t, cond), direct.logits(x0, t, cond), atol=1e-6)
    null = (loaded.null_cond, direct.null_cond)
    assert torch.equal(*null) if adapter is VQDiffusion else torch.equal(null[0]["states"], null[1]["states"])
