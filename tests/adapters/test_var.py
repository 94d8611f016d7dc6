"""VAR adapter: the official checkpoints' layouts, tiny random components, the KV cache, exact reconstruction, loading, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import dicelib
from dicelib.adapters import VAR, VARNet, VQVAE
from dicelib.adapters.imagenet_classes import class_id, class_name, class_names
from dicelib.adapters.random_components import random_var, var_components
from dicelib.adapters.var import LAYOUT_FILE, VAE_KWARGS, published_kwargs
from dicelib.errors import DiceError, MissingWeightsError

ATOL = 1e-5  # cached vs uncached logits (float32; measured differences are about 4e-7 on the tiny model)


def layouts() -> dict:
    """Return the vendored copy of the official layouts (dicelib/adapters/data/SOURCE.md)."""
    return json.loads(LAYOUT_FILE.read_text())


@pytest.fixture(scope="module")
def model() -> VAR:
    return random_var("tiny", seed=0, device="cpu")


@pytest.fixture(scope="module")
def maps(model, images):
    return model.encode_image(images)


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    return model.save_pretrained(tmp_path_factory.mktemp("var"))


@pytest.mark.parametrize("entry", ["var_d16", "var_d20", "var_d24", "var_d30", "vae_ch160v4096z32"])
def test_full_size_modules_have_the_official_keys_and_shapes(entry):
    layout = layouts()[entry]
    with torch.device("meta"):
        module = VQVAE(**VAE_KWARGS) if entry.startswith("vae") else VARNet(**published_kwargs(int(entry[5:])))
    state = module.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == layout["state_dict"]
    assert list(state) == list(layout["state_dict"])  # the published classes' order too
    assert sum(v.numel() for v in state.values()) == layout["num_params"]


def test_constructors_take_the_published_defaults():
    with torch.device("meta"):
        net, vae = VARNet(), VQVAE(ch=160)
    assert net.config == dict(vocab_size=4096, Cvae=32, num_classes=1000, depth=16, embed_dim=1024, num_heads=16,
                              mlp_ratio=4.0, norm_eps=1e-6, shared_aln=False, attn_l2_norm=True,
                              patch_nums=[1, 2, 3, 4, 5, 6, 8, 10, 13, 16])
    assert net.L == 680 and vae.vocab_size == 4096 and vae.Cvae == 32 and vae.downsample == 16
    assert {k: list(v.shape) for k, v in vae.state_dict().items()} == layouts()["vae_ch160v4096z32"]["state_dict"]


def test_maps_decode_and_shapes(model, maps, images):
    assert model.scales == [(1, 1), (2, 2), (3, 3), (4, 4)] and model.num_classes == 16 and model.image_size == 8
    assert [tuple(m.shape) for m in maps] == [(2, 1), (2, 4), (2, 9), (2, 16)]
    assert all(m.dtype == torch.long and int(m.max()) < 16 for m in maps)
    assert maps[-1].unique().numel() > 3  # the random codebook is used
    img = model.decode(maps)
    assert img.shape == (2, 3, 8, 8) and float(img.min()) >= 0 and float(img.max()) <= 1
    assert torch.equal(model.null_cond, torch.tensor([1000]))


def test_teacher_forced_forward_equals_the_scale_by_scale_logits(model, maps):
    labels = model.encode_prompt(["tabby cat", "tiger"])
    full = model.net(labels, model.vae.idxBl_to_var_input(maps))  # [B, L, V]
    assert full.shape == (2, 30, 16)
    uncached = random_var("tiny", seed=0, device="cpu", kv_cache=False)
    begin = 0
    for k, (h, w) in enumerate(model.scales):
        part = full[:, begin:begin + h * w]
        assert torch.allclose(uncached.scale_logits(maps[:k], labels), part, atol=ATOL, rtol=0)
        begin += h * w


def test_attention_is_block_causal(model, maps):
    """Changing scale 2's map changes the logits of scale 3 and no coarser one."""
    labels = model.encode_prompt([3, 5])
    other = [m.clone() for m in maps]
    other[2] = (other[2] + 1) % model.num_classes
    a = model.net(labels, model.vae.idxBl_to_var_input(maps))
    b = model.net(labels, model.vae.idxBl_to_var_input(other))
    assert torch.equal(a[:, :14], b[:, :14]) and not torch.allclose(a[:, 14:], b[:, 14:])


def test_kv_cache_gives_the_uncached_numbers_and_tokens(model, maps):
    labels = torch.tensor([281, 1000])  # a class and the null class
    uncached = random_var("tiny", seed=0, device="cpu", kv_cache=False)
    model.clear_cache()
    for k in range(len(model.scales)):
        cached, plain = model.scale_logits(maps[:k], labels), uncached.scale_logits(maps[:k], labels)
        assert cached.shape == plain.shape == (2, model.scales[k][0] ** 2, 16)
        assert torch.allclose(cached, plain, atol=ATOL, rtol=0)
        assert torch.equal(cached.argmax(-1), plain.argmax(-1))
        assert model._cache[-1].done == k + 1  # each call after the first ran only its own scale
    # a different prefix or class does not reuse the cache wrongly
    other = [m.clone() for m in maps]
    other[1] = (other[1] + 3) % model.num_classes
    for prefix, lab in ((other[:3], labels), (maps[:3], torch.tensor([7, 1000]))):
        assert torch.allclose(model.scale_logits(prefix, lab), uncached.scale_logits(prefix, lab), atol=ATOL, rtol=0)


@pytest.mark.parametrize("pseudo_inverse", ["onehot", "lai"])
@pytest.mark.parametrize("store", ["float32", "bfloat16", "none"])
def test_invert_then_edit_with_the_source_class_is_token_exact(model, maps, pseudo_inverse, store):
    cond = model.encode_prompt(["tabby cat", "tiger"])
    inv = dicelib.invert(model, maps, cond, method="next_scale", pseudo_inverse=pseudo_inverse, cfg_scale=1.5,
                         cfg_schedule="linear", store=store, margin=18.0, generator=torch.Generator().manual_seed(1))
    out = dicelib.edit(model, inv, cond, lambda1=1.0, lambda2=0.0, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(a, b) for a, b in zip(out, maps)) and len(out) == len(maps)
    edited = dicelib.edit(model, inv, model.encode_prompt(["goldfish", "tench"]), start_scale=1,
                          generator=torch.Generator().manual_seed(2))
    assert [m.shape for m in edited] == [m.shape for m in maps] and torch.equal(edited[0], maps[0])
    assert model.decode(edited).shape == (2, 3, 8, 8)


def test_reconstruction_holds_for_random_models_and_classes():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=6, deadline=None)
    @given(seed=st.integers(0, 2**16), labels=st.lists(st.integers(0, 1000), min_size=1, max_size=3),
           cfg=st.sampled_from([None, 1.5, 4.0]))
    def check(seed, labels, cfg):
        m = random_var("tiny", seed=seed, device="cpu")
        images = torch.rand(len(labels), 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        x0, cond = m.encode_image(images), torch.tensor(labels)
        inv = dicelib.invert(m, x0, cond, method="next_scale", pseudo_inverse="lai", cfg_scale=cfg,
                             cfg_schedule="linear", generator=torch.Generator().manual_seed(seed))
        out = dicelib.edit(m, inv, cond, lambda1=1.0, lambda2=0.0, generator=torch.Generator().manual_seed(seed + 1))
        assert all(torch.equal(a, b) for a, b in zip(out, x0))

    check()


def test_from_pretrained_reads_the_folder_save_pretrained_writes(model, folder, maps, images):
    assert {p.name for p in folder.iterdir()} == {"var_d2.pth", "vae_ch160v4096z32.pth", "var_config.json"}
    assert set(torch.load(folder / "var_d2.pth", weights_only=True)) == set(model.net.state_dict())
    loaded = VAR.from_pretrained(folder, device="cpu")
    assert loaded.net.depth == 2 and loaded.name == str(folder)
    assert all(torch.equal(a, b) for a, b in zip(loaded.encode_image(images), maps))
    labels = torch.tensor([1, 2])
    assert torch.equal(loaded.scale_logits(maps[:2], labels), model.scale_logits(maps[:2], labels))
    assert torch.equal(loaded.decode(maps), model.decode(maps))


def test_missing_weights_name_the_files_and_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError) as err:
        VAR.from_pretrained(depth=20)
    msg = str(err.value)
    for part in ("var_d20.pth and vae_ch160v4096z32.pth", "FoundationVision/var",
                 "huggingface-cli download FoundationVision/var var_d20.pth vae_ch160v4096z32.pth", "HF_HUB_OFFLINE=1"):
        assert part in msg
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "var_d16.pth").write_bytes(b"")
    with pytest.raises(MissingWeightsError, match=r"missing: vae_ch160v4096z32.pth in .*half"):
        VAR.from_pretrained(tmp_path / "half")


def test_broken_or_foreign_checkpoints_name_the_file(folder, tmp_path):
    broken = shutil.copytree(folder, tmp_path / "broken")
    (broken / "vae_ch160v4096z32.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MissingWeightsError, match="vae_ch160v4096z32.pth is not a readable PyTorch checkpoint"):
        VAR.from_pretrained(broken)
    (broken / "var_config.json").unlink()  # the published architecture (d2: width 128) does not fit the tiny weights
    with pytest.raises(DiceError, match="var_d2.pth does not fit VARNet"):
        VAR.from_pretrained(broken, depth=2)


def test_class_names_and_ids(model):
    assert len(class_names()) == 1000 and class_name(281) == "tabby" and class_name(292) == "tiger"
    assert class_id("Tabby Cat") == 281 and class_id("tiger") == 292 and class_id("tiger cat") == 282
    assert class_id("crane") == 134 and class_id(7) == 7 and class_id(" 12 ") == 12
    assert model.encode_prompt("tabby cat").tolist() == [281]
    assert model.encode_prompt(["goldfish", 0, "999"]).tolist() == [1, 0, 999]
    assert model.encode_prompt(torch.tensor([3, 4])).tolist() == [3, 4]
    with pytest.raises(DiceError, match=r"'tabby kat' is not an ImageNet class name; close matches: 'tabby cat' \(281\)"):
        model.encode_prompt(["tabby kat"])
    with pytest.raises(DiceError, match="class id 1000 is out of range; expected 0..999"):
        model.encode_prompt([1000])
    with pytest.raises(DiceError, match="no close match"):
        class_id("qqqqzzzz")


def test_error_paths(model, maps):
    labels = torch.tensor([1, 2])
    with pytest.raises(DiceError, match=r"prefix\[1\] must be token ids \[B, 4\]"):
        model.scale_logits([maps[0], maps[2]], labels)
    with pytest.raises(DiceError, match="no scale 4 to predict"):
        model.scale_logits(maps, labels)
    with pytest.raises(DiceError, match="3 conditions for 2 rows"):
        model.scale_logits(maps[:1], torch.tensor([1, 2, 3]))
    with pytest.raises(DiceError, match="class ids must be in 0..1000"):
        model.scale_logits(maps[:1], torch.tensor([1, 1001]))
    with pytest.raises(DiceError, match="VAR conditions are ImageNet class ids"):
        model.scale_logits([], torch.zeros(2, 8))
    with pytest.raises(DiceError, match="decode takes all 4 token maps"):
        model.decode(maps[:3])
    with pytest.raises(DiceError, match="does not fit"):
        parts = var_components("tiny")
        VAR(parts["vae"], VARNet(vocab_size=8, Cvae=4, depth=1, embed_dim=8, num_heads=1, patch_nums=(1, 2, 3, 4)))
    assert model.scale_logits([], torch.tensor([5])).shape == (1, 1, 16)  # scale 0: B from the condition


def test_registry_names_load_the_adapter(folder, tmp_path, monkeypatch):
    from dicelib.registry import get_spec, load_model

    model, spec = load_model("random-var", "cpu")
    assert isinstance(model, VAR) and spec.family == "var" and spec.settings.method == "next_scale"
    assert (spec.settings.cfg_scale, spec.settings.cfg_schedule, spec.settings.pseudo_inverse) == (1.5, "linear", "lai")
    loaded, spec = load_model(f"var:{folder}", "cpu")
    assert loaded.net.depth == 2 and spec.family == "var"
    assert get_spec("var-d24").settings.start_scale == 4 and get_spec("var-d30").family == "var"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError, match="huggingface-cli download FoundationVision/var var_d24.pth"):
        load_model("var-d24", "cpu")


def test_cli_inverts_and_edits_random_var_token_exact(tmp_path, images):
    """`dicelib invert/edit --model random-var`: the reconstruction is exact, a class edit writes an image, a bad
    class name is one error line listing close matches."""
    from PIL import Image
    from typer.testing import CliRunner

    from dicelib.cli import app

    src = tmp_path / "in.png"
    Image.fromarray((images[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(src)
    run = CliRunner().invoke
    res = run(app, ["invert", "--model", "random-var", "--image", str(src), "--source", "tabby cat",
                    "--save-inversion", str(tmp_path / "inv.pt"), "--out", str(tmp_path / "rec.png")])
    assert res.exit_code == 0, res.output
    assert "reconstruction: 0 of 30 tokens differ from the input" in res.output
    res = run(app, ["edit", "--model", "random-var", "--inversion", str(tmp_path / "inv.pt"), "--target", "tiger",
                    "--out", str(tmp_path / "out.png")])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out.png").size == (8, 8)
    res = run(app, ["edit", "--model", "random-var", "--image", str(src), "--source", "tabby kat", "--target", "tiger",
                    "--out", str(tmp_path / "bad.png")])
    assert res.exit_code == 2 and "'tabby kat' is not an ImageNet class name; close matches: 'tabby cat'" in res.output


def test_inversion_and_editing_run_each_scale_once_with_the_cache(model, maps, monkeypatch):
    """Under guidance (class and null rows in one call) each call runs only its own scale, once the rows are fixed: the
    linear ramp leaves scale 0 unguided (class rows alone), so scale 1 recomputes scale 0's one token for the null rows."""
    runs = []
    real = model.net.run

    def spy(labels, x, first, stop, past=None):
        runs.append((first, stop))
        return real(labels, x, first, stop, past)

    monkeypatch.setattr(model.net, "run", spy)
    model.clear_cache()
    cond = model.encode_prompt(["tabby cat", "tiger"])
    inv = dicelib.invert(model, maps, cond, method="next_scale", pseudo_inverse="lai", cfg_scale=1.5,
                         cfg_schedule="linear", generator=torch.Generator().manual_seed(0))
    dicelib.edit(model, inv, model.encode_prompt(["goldfish", "tench"]), lambda1=0.5,
                 generator=torch.Generator().manual_seed(1))
    assert runs == [(0, 1), (0, 2), (2, 3), (3, 4)] * 2  # invert, then edit


def test_from_pretrained_reads_the_hugging_face_cache(model, folder, maps, tmp_path, monkeypatch):
    """FoundationVision/var in the HF cache layout (snapshots/<rev>, refs/main), offline; here the tiny weights under
    the d16 file name with their var_config.json."""
    from dicelib.registry import load_model

    repo = tmp_path / "hub" / "models--FoundationVision--var"
    snap = repo / "snapshots" / ("1" * 40)
    shutil.copytree(folder, snap)
    (snap / "var_d2.pth").rename(snap / "var_d16.pth")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read at import: the env var is too late
    loaded, _ = load_model("var-d16", "cpu")
    assert loaded.name == "var-d16" and loaded.net.depth == 2
    labels = torch.tensor([281, 1000])
    assert torch.equal(loaded.scale_logits(maps[:3], labels), model.scale_logits(maps[:3], labels))
    with pytest.raises(MissingWeightsError, match="missing: var_d20.pth in FoundationVision/var"):
        load_model("var-d20", "cpu")
