"""Paella adapter: paella_v3.pt's full-size layout, tiny random components, exact reconstruction, loading, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dicelib
from dicelib.adapters import Paella, PaellaNet
from dicelib.adapters.random_components import paella_components, random_paella
from dicelib.core.guidance import predict_log_probs
from dicelib.errors import DiceError, MissingWeightsError

LAYOUT = Path(__file__).parents[1] / "fixtures" / "paella" / "paella_v3_state_dict.json"  # keys and shapes only


@pytest.fixture(scope="module")
def model() -> Paella:
    return random_paella("tiny", seed=0, device="cpu")


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    return model.save_pretrained(tmp_path_factory.mktemp("paella"))


def test_full_size_net_has_the_checkpoints_keys_and_shapes():
    layout = json.loads(LAYOUT.read_text())
    with torch.device("meta"):
        net = PaellaNet(byt5_embd=2560)
    assert net.config == {**layout["defaults"], "dropout": [layout["defaults"]["dropout"]] * 3}
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == layout["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == layout["parameters"]


def test_shapes_ids_and_conditions(model, images):
    x0 = model.encode_image(images)
    assert x0.shape == (2, model.num_positions) == (2, 64) and x0.dtype == torch.long
    assert model.mask_id is None and int(x0.max()) < model.num_classes == 16
    assert x0.unique().numel() > 3  # the random VQ uses several codes
    prompts = ["a red cat", "a blue dog on green grass"]
    cond = model.encode_prompt(prompts)
    assert [c["byt5"].shape[0] for c in cond] == [len(p) + 1 for p in prompts]  # bytes + </s>, no padding
    assert cond[0]["clip"].shape == (8,)
    null = model.null_cond
    assert len(null) == 1 and null[0]["byt5"].shape[0] == len(model.negative_prompt) + 1
    logits = model.logits(x0, torch.tensor([0.3, 0.9]), cond)
    assert logits.shape == (2, 64, model.num_classes) and bool(torch.isfinite(logits).all())
    img = model.decode(x0)
    assert img.shape == (2, 3, 32, 32) and float(img.min()) >= 0 and float(img.max()) <= 1


def test_rows_of_different_prompt_lengths_compute_as_if_alone(model, images):
    x0 = model.encode_image(images)
    cond = model.encode_prompt(["a cat", "a much longer prompt about a dog"])
    t = torch.tensor([0.4, 0.7])
    both = model.logits(x0, t, cond)
    for i in range(2):
        assert torch.allclose(both[i], model.logits(x0[i:i + 1], t[i:i + 1], cond[i:i + 1])[0], atol=1e-5)


def test_attention_weights_scale_the_conditioning_tokens(model, images):
    x0 = model.encode_image(images)
    cond, t = model.encode_prompt(["a cat", "a dog"]), torch.full((2,), 0.5)
    weighted = model.logits(x0, t, cond)
    parts = paella_components("tiny", seed=0)
    plain = Paella.from_components(**parts, attention_weights=None, device="cpu")
    ones = Paella.from_components(**parts, attention_weights=(1.0, 1.0), device="cpu")
    assert not torch.allclose(weighted, plain.logits(x0, t, cond), atol=1e-4)
    assert torch.allclose(ones.logits(x0, t, cond), plain.logits(x0, t, cond), atol=1e-6)


@pytest.mark.parametrize("store,dtype", [("float32", torch.float32), ("none", torch.float32), ("none", torch.bfloat16)],
                         ids=["float32", "none", "none-bfloat16-weights"])
def test_image_tokens_invert_then_edit_with_the_source_prompt_is_token_exact(model, images, store, dtype):
    if dtype != torch.float32:  # half-precision denoiser and text encoders (the VQ stays float32)
        model = Paella.from_components(**paella_components("tiny", seed=0), dtype=dtype, device="cpu")
    x0 = model.encode_image(images)
    cond = model.encode_prompt(["a red cat", "a blue dog on the grass"])
    inv = dicelib.invert(model, x0, cond, method="masked", noise=model.noise, steps=8, tau=0.9,
                         pseudo_inverse="lai", cfg_scale=10.0, store=store, generator=torch.Generator().manual_seed(1))
    x = dicelib.edit(model, inv, cond, lambda1=1.0, lambda2=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, x0) and torch.equal(dicelib.reconstruct(model, inv), x0)
    image = model.decode(x)
    assert image.shape == (2, 3, 32, 32) and torch.equal(image, model.decode(x0))
    edited = dicelib.edit(model, inv, model.encode_prompt(["a green cat", "a red dog"]),
                          generator=torch.Generator().manual_seed(2))
    assert edited.shape == x0.shape and int(edited.max()) < model.num_classes


def test_guidance_matches_the_authors_raw_logit_mix(model, images):
    """dicelib guides log-probs; the authors mix raw logits cond * w + uncond * (1 - w): the same distribution."""
    x, t, w = model.encode_image(images), torch.full((2,), 0.6), 10.0
    cond = model.encode_prompt(["a cat", "a dog"])
    ours = predict_log_probs(model, [(x, t, cond)], w, 1.0)[0]
    mixed = model.logits(x, t, cond) * w + model.logits(x, t, model.null_cond * 2) * (1 - w)
    assert torch.allclose(ours, torch.log_softmax(mixed, dim=-1).clamp(min=-70), atol=1e-4)


def test_from_pretrained_reads_the_folder_save_pretrained_writes(model, folder, images):
    assert {p.name for p in folder.iterdir()} >= {"paella_v3.pt", "vqgan_f4.pt", "byt5", "clip"}
    vq_keys = torch.load(folder / "vqgan_f4.pt", weights_only=True)["state_dict"]
    assert "vquantizer.codebook.weight" in vq_keys  # Paella's key name, as in the official file
    loaded = Paella.from_pretrained(folder, device="cpu")
    x0 = model.encode_image(images)
    assert torch.equal(loaded.encode_image(images), x0)
    t = torch.tensor([0.2, 0.8])
    prompts = ["a red cat", "a dog"]
    ours, theirs = loaded.logits(x0, t, loaded.encode_prompt(prompts)), model.logits(x0, t, model.encode_prompt(prompts))
    assert torch.equal(ours, theirs)


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError) as err:
        Paella.from_pretrained()
    msg = str(err.value)
    for part in ("paella_v3.pt and vqgan_f4.pt", "huggingface-cli download dome272/Paella paella_v3.pt vqgan_f4.pt",
                 "huggingface-cli download google/byt5-xl",
                 "huggingface-cli download laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "HF_HUB_OFFLINE=1", "byt5/"):
        assert part in msg
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "paella_v3.pt").write_bytes(b"")
    with pytest.raises(MissingWeightsError, match="missing: vqgan_f4.pt in .*half; google/byt5-xl;"):
        Paella.from_pretrained(tmp_path / "half")


def test_broken_or_foreign_checkpoints_name_the_file(folder, tmp_path, monkeypatch):
    import shutil

    broken = shutil.copytree(folder, tmp_path / "broken")
    (broken / "vqgan_f4.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MissingWeightsError, match="vqgan_f4.pt is not a readable PyTorch checkpoint"):
        Paella.from_pretrained(broken)
    (broken / "paella_config.json").unlink()  # the published architecture does not fit the tiny weights
    with pytest.raises(DiceError, match="paella_v3.pt does not fit PaellaNet"):
        Paella.from_pretrained(broken)


def test_error_paths(model, images):
    x0 = model.encode_image(images)
    cond = model.encode_prompt(["a cat", "a dog"])
    with pytest.raises(DiceError, match="3 conditions for 2 rows"):
        model.logits(x0, torch.zeros(2), cond + cond[:1])
    with pytest.raises(DiceError, match="resolution 20 must be a multiple of 16"):
        Paella.from_components(**{**paella_components("tiny"), "resolution": 20})
    with pytest.raises(DiceError, match="level_config"):
        PaellaNet(level_config=["CT", "CTX", "CTA"])
    with pytest.raises(DiceError, match="multiples of 8"):
        PaellaNet(c_hidden=[8, 8, 8], blocks=[1, 1, 1], nhead=[-1, 2, 2], num_labels=16, c_in=8, c_out=8,
                  c_cond=8, byt5_embd=8, clip_embd=8)(torch.zeros(1, 12, 12, dtype=torch.long), torch.zeros(1),
                                                       torch.zeros(1, 3, 8))
