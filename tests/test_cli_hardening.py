"""Bad inputs to the CLI and the Python entry points give one `Error:` line (a DiceError), never a traceback,
a silently ignored option or an output written over another output or the input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import dicelib
from dicelib import DiceError
from dicelib.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(out, *expected: str) -> None:
    assert out.exit_code == 2 and out.exception is None or isinstance(out.exception, SystemExit), out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
    assert all(e in lines[0] for e in expected), lines[0]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """An untrained small shapes checkpoint and a scene image with its prompt."""
    from dicelib.image import shapes_model as sm
    from dicelib.image import shapesbench as sb

    folder = tmp_path_factory.mktemp("shapes")
    torch.manual_seed(0)
    sm.save(sm.ShapesDenoiser(sm.ShapesConfig(dim=32, depth=1, heads=2)), folder / "tiny.pt")
    scene = sb.random_scene(np.random.default_rng(0))
    Image.fromarray(sb.to_rgb(sb.render(scene))).save(folder / "scene.png")
    return f"shapes:{folder / 'tiny.pt'}", folder / "scene.png", sb.prompt(scene)


def test_two_outputs_on_one_file_are_refused_before_any_work(tmp_path, shapes):
    model, image, prompt = shapes
    both = tmp_path / "both.png"
    out = run("invert", "--model", model, "--image", image, "--source", prompt, "--save-inversion", both, "--out", both)
    one_error_line(out, "--save-inversion", "is the same file as --out")
    assert not both.exists()


def test_an_edit_never_writes_over_its_input_even_through_a_link(tmp_path, shapes):
    model, image, prompt = shapes
    before = image.read_bytes()
    one_error_line(run("edit", "--model", model, "--image", image, "--source", prompt, "--target", prompt,
                       "--out", image), "--out", "same file as --image")
    os.symlink(image, tmp_path / "link.png")
    one_error_line(run("edit", "--model", model, "--image", image, "--source", prompt, "--target", prompt,
                       "--out", tmp_path / "link.png"), "same file as --image")
    assert image.read_bytes() == before


def test_saving_through_a_symlink_keeps_the_link_and_a_directory_is_a_clear_error(tmp_path, shapes):
    model, image, prompt = shapes
    inv_path = tmp_path / "inv.pt"
    assert run("invert", "--model", model, "--image", image, "--source", prompt, "--save-inversion", inv_path,
               "--steps", 4).exit_code == 0
    inv = dicelib.Inversion.load(inv_path)
    os.symlink(inv_path, tmp_path / "link.pt")
    inv.save(tmp_path / "link.pt")
    assert (tmp_path / "link.pt").is_symlink() and dicelib.Inversion.load(inv_path).x0.equal(inv.x0)
    with pytest.raises(DiceError, match="is a directory; give a file path"):
        inv.save(tmp_path)


def test_edit_with_a_saved_inversion_refuses_the_inversion_options(tmp_path, shapes):
    model, image, prompt = shapes
    inv = tmp_path / "inv.pt"
    assert run("invert", "--model", model, "--image", image, "--source", prompt, "--save-inversion", inv,
               "--steps", 4).exit_code == 0
    for option, value in (("--steps", 8), ("--tau", 0.5), ("--pseudo-inverse", "onehot"), ("--store", "none"),
                          ("--method", "masked"), ("--noise", "mask")):
        one_error_line(run("edit", "--model", model, "--inversion", inv, "--target", prompt, "--out",
                           tmp_path / "e.png", option, value), option, "already inverted")


def test_noise_with_the_multinomial_method_is_refused(tmp_path, shapes):
    model, image, prompt = shapes
    one_error_line(run("invert", "--model", model, "--image", image, "--source", prompt, "--save-inversion",
                       tmp_path / "i.pt", "--method", "multinomial", "--noise", "mask"),
                   "--noise mask applies to the masked method only")
    assert not (tmp_path / "i.pt").exists()


def test_a_file_that_is_not_a_checkpoint_is_one_error_line(tmp_path, shapes):
    _, image, prompt = shapes
    one_error_line(run("invert", "--model", f"shapes:{image}", "--image", image, "--source", prompt,
                       "--save-inversion", tmp_path / "i.pt"), "is not a dicelib shapes checkpoint")
    from dicelib.image.shapes_sweep import main

    with pytest.raises(DiceError, match="is not a dicelib shapes checkpoint"):
        main(["--checkpoint", str(image), "--reports", str(tmp_path), "--per-type", "1", "--taus", "0.8",
              "--lambdas", "0.5", "--steps", "2"])


def test_demo_image_with_a_negative_seed_is_one_error_line(tmp_path):
    one_error_line(run("demo-image", "--out", tmp_path / "d.png", "--seed", -5), "--seed -5 is not allowed")


def test_more_cases_per_type_than_there_are_is_said(tmp_path):
    from dicelib.image.shapes_sweep import main

    with pytest.raises(DiceError, match="per_type = 1000 is more than the 20 case\\(s\\) per edit type here"):
        main(["--per-type", "1000", "--reports", str(tmp_path)])


@pytest.mark.parametrize("device", ["cuda", "meta", "banana"])
def test_a_model_on_a_device_this_machine_lacks_is_a_clear_error(device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from dicelib.registry import load_model

    with pytest.raises(DiceError, match=f"device '{device}' is not (allowed|available)"):
        load_model("shapes-oracle", device)


def test_text_over_the_models_positions_is_a_clear_error():
    from transformers import BertConfig

    from dicelib.adapters import MaskedLM
    from dicelib.text import model as text_model

    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    lm = MaskedLM(text_model.build_model(config, pretrained=False, seed=0), text_model.load_tokenizer(), name="tiny")
    lm.encode_pair(["Negative Sentiment: bad."], [" the food was cold ."])  # fits
    with pytest.raises(DiceError, match="the model 'tiny' reads at most 32 positions"):
        lm.encode_pair(["Negative Sentiment: bad."], [" the food was cold ." * 8])
    with pytest.raises(DiceError, match="reads at most 32 positions"):
        lm.encode_pair(["Negative Sentiment: " + "very " * 40], [" the food was cold ."])
