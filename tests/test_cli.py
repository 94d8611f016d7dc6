"""The `dicelib` command line, end to end on tiny random models and on a (tiny, untrained) shapes checkpoint."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import dicelib
from dicelib.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def shapes_case(tmp_path_factory):
    """An untrained small shapes checkpoint (reconstruction must be exact for any weights) and a scene."""
    from dicelib.image import shapes_model as sm
    from dicelib.image import shapesbench as sb

    folder = tmp_path_factory.mktemp("shapes")
    torch.manual_seed(0)
    sm.save(sm.ShapesDenoiser(sm.ShapesConfig(dim=32, depth=1, heads=2)), folder / "shapes-tiny.pt")
    scene = sb.random_scene(np.random.default_rng(0))
    Image.fromarray(sb.to_rgb(sb.render(scene))).resize((64, 64), Image.Resampling.NEAREST).save(folder / "scene.png")
    return folder / "shapes-tiny.pt", folder / "scene.png", sb.prompt(scene)


@pytest.fixture(scope="module")
def paella_folder(tmp_path_factory):
    """A tiny random Paella saved in the official folder layout, for `--model paella:<folder>`."""
    from dicelib.adapters.random_components import random_paella

    return random_paella("tiny", device="cpu").save_pretrained(tmp_path_factory.mktemp("paella"))


@pytest.mark.parametrize("model", ["random-vq-diffusion", "random-amused", "random-paella", "paella:<folder>"])
def test_invert_then_edit_with_the_source_prompt_is_token_exact(tmp_path, photo, model, request):
    if model == "paella:<folder>":
        model = f"paella:{request.getfixturevalue('paella_folder')}"
    inv_path, recon, same = tmp_path / "inv.pt", tmp_path / "recon.png", tmp_path / "same.png"
    steps = [] if model == "random-vq-diffusion" else ["--steps", "8"]  # multinomial: the scheduler's T
    res = run("invert", "--model", model, "--image", photo, "--source", "a red cat", "--save-inversion", inv_path,
              "--out", recon, *steps)
    assert res.exit_code == 0, res.output
    assert "reconstruction: 0 of" in res.output
    inv = dicelib.Inversion.load(inv_path)
    res = run("edit", "--model", model, "--inversion", inv_path, "--target", "a red cat", "--lambda1", "1",
              "--lambda2", "0", "--out", same)
    assert res.exit_code == 0, res.output
    assert f"edit: 0 of {inv.x0.numel()} tokens changed" in res.output
    assert np.array_equal(pixels(recon), pixels(same))


def test_edit_in_one_command_saves_a_reusable_inversion(tmp_path, photo):
    out, inv_path = tmp_path / "dog.png", tmp_path / "inv.pt"
    res = run("edit", "--model", "random-amused", "--image", photo, "--source", "a cat", "--target", "a dog",
              "--out", out, "--save-inversion", inv_path, "--steps", "6", "--cfg", "4", "--seed", "3")
    assert res.exit_code == 0, res.output
    assert pixels(out).shape == (8, 8, 3) and inv_path.is_file()
    again = tmp_path / "dog2.png"
    res = run("edit", "--model", "random-amused", "--inversion", inv_path, "--target", "a dog", "--out", again,
              "--seed", "3")
    assert res.exit_code == 0, res.output
    assert np.array_equal(pixels(out), pixels(again))  # same inversion + same seed -> same edit


@pytest.mark.parametrize("method", ["masked", "multinomial"])
def test_shapes_model_reconstructs_exactly_and_edits(tmp_path, shapes_case, method, monkeypatch):
    from dicelib.image import shapes_model

    ckpt, scene, prompt = shapes_case
    monkeypatch.setattr(shapes_model, "CHECKPOINT", ckpt)  # `--model shapes` reads models/shapes.pt
    inv_path, recon, edited = tmp_path / "inv.pt", tmp_path / "recon.png", tmp_path / "edit.png"
    steps = ["--steps", "8"] if method == "masked" else []
    res = run("invert", "--model", "shapes", "--method", method, "--image", scene, "--source", prompt,
              "--save-inversion", inv_path, "--out", recon, "--tau", "1", *steps)
    assert res.exit_code == 0, res.output
    assert "reconstruction: 0 of 256" in res.output
    want = np.asarray(Image.open(scene).resize((16, 16), Image.Resampling.NEAREST).convert("RGB"))
    assert np.array_equal(pixels(recon), want)  # palette pixels are the tokens: the image itself comes back
    target = prompt.rsplit(" on a ", 1)[0] + " on a white background"
    res = run("edit", "--model", f"shapes:{ckpt}", "--inversion", inv_path, "--target", target, "--out", edited)
    assert res.exit_code == 0, res.output
    assert pixels(edited).shape == (16, 16, 3)


def test_models_lists_the_registry():
    res = run("models")
    assert res.exit_code == 0
    for name in ("amused/amused-256", "microsoft/vq-diffusion-ithq", "paella", "shapes", "random-amused",
                 "random-paella"):
        assert name in res.output


def one_line_error(res, *fragments: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, res.output
    for frag in fragments:
        assert frag in lines[0]


def test_errors_are_one_line(tmp_path, photo, monkeypatch, shapes_case):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "o.png"
    base = ["edit", "--image", photo, "--source", "a cat", "--target", "a dog", "--out", out]
    one_line_error(run(*base, "--model", "amused/amused-256"), "amused/amused-256", "huggingface-cli download")
    one_line_error(run(*base, "--model", "microsoft/vq-diffusion-ithq"), "microsoft/vq-diffusion-ithq")
    one_line_error(run(*base, "--model", "paella"), "dome272/Paella", "google/byt5-xl", "huggingface-cli download")
    one_line_error(run(*base, "--model", "no-such-model"), "unknown model", "random-amused")
    one_line_error(run(*base, "--model", "random-amused", "--tau", "1.5"), "tau")
    one_line_error(run(*base, "--model", "random-amused", "--lambda1", "nan"), "lambda1")
    one_line_error(run(*base, "--model", "random-amused", "--steps", "0"), "steps")
    one_line_error(run(*base, "--model", "random-amused", "--pseudo-inverse", "magic"), "pseudo_inverse", "lai")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    one_line_error(run("edit", "--model", "random-amused", "--image", bad, "--source", "a", "--target", "b",
                       "--out", out), "cannot read image")
    one_line_error(run("edit", "--model", "random-amused", "--image", tmp_path / "none.png", "--source", "a",
                       "--target", "b", "--out", out), "does not exist")
    one_line_error(run("edit", "--model", "random-amused", "--inversion", tmp_path / "none.pt", "--target", "b",
                       "--out", out), "no saved inversion")
    one_line_error(run("edit", "--model", "random-amused", "--inversion", bad, "--image", photo, "--source", "a",
                       "--target", "b", "--out", out), "either --inversion")
    one_line_error(run("edit", "--model", "random-amused", "--target", "b", "--out", out), "--image and --source")
    ckpt, scene, prompt = shapes_case
    one_line_error(run("edit", "--model", f"shapes:{ckpt}", "--image", scene, "--source", "a cat", "--target", prompt,
                       "--out", out), "unknown word")
    inv_path = tmp_path / "amused.pt"
    assert run("invert", "--model", "random-amused", "--image", photo, "--source", "a", "--steps", "2",
               "--save-inversion", inv_path).exit_code == 0
    one_line_error(run("edit", "--model", "random-vq-diffusion", "--inversion", inv_path, "--target", "b",
                       "--out", out), "K=8")
    monkeypatch.setattr("dicelib.image.shapes_model.CHECKPOINT", tmp_path / "untrained.pt")
    one_line_error(run(*base, "--model", "shapes"), "no shapes checkpoint")


def test_edit_cfg_1_switches_guidance_off_and_only_an_absent_cfg_inherits(tmp_path, photo, monkeypatch):
    inv_path = tmp_path / "inv.pt"
    res = run("invert", "--model", "random-amused", "--image", photo, "--source", "a cat", "--steps", "4",
              "--cfg", "3", "--save-inversion", inv_path)
    assert res.exit_code == 0, res.output
    assert dicelib.Inversion.load(inv_path).cfg_scale == 3.0
    real_edit, calls = dicelib.edit, []

    def spy(model, inv, cond, **kwargs):
        x = real_edit(model, inv, cond, **kwargs)
        calls.append((kwargs["cfg_scale"], x))
        return x

    monkeypatch.setattr(dicelib, "edit", spy)
    for cfg in (["--cfg", "1"], []):
        res = run("edit", "--model", "random-amused", "--inversion", inv_path, "--target", "a dog",
                  "--out", tmp_path / "o.png", *cfg)
        assert res.exit_code == 0, res.output
    (off, x_off), (inherited, x_inherited) = calls
    assert off == 1.0 and inherited is None  # 1.0: guidance off; None: dicelib.edit uses the inversion's 3.0
    assert not torch.equal(x_off, x_inherited)


def test_bad_device_and_paths_are_one_line_errors_before_any_work(tmp_path, photo):
    inv_path = tmp_path / "inv.pt"
    base = ["edit", "--model", "random-amused", "--image", photo, "--source", "a", "--target", "b",
            "--save-inversion", inv_path]
    out = ["--out", tmp_path / "o.png"]
    if not torch.cuda.is_available():
        one_line_error(run(*base, *out, "--device", "cuda"), "'cuda'", "cpu")
    one_line_error(run(*base, *out, "--device", "cuda:99"), "'cuda:99'", "cpu")
    one_line_error(run(*base, *out, "--device", "banana"), "'banana'", "cpu")
    one_line_error(run(*base, "--out", tmp_path / "out.txt"), "out.txt", ".png", ".jpg")
    one_line_error(run(*base, "--out", tmp_path), str(tmp_path), "directory")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for where in (blocker / "inv.pt", blocker / "sub" / "inv.pt"):
        one_line_error(run("invert", "--model", "random-amused", "--image", photo, "--source", "a",
                           "--save-inversion", where), f"--save-inversion {str(where)!r}", "not a folder")
    one_line_error(run(*base, "--out", blocker / "o.png"), "--out", "not a folder")
    one_line_error(run("edit", "--model", "random-amused", "--image", tmp_path, "--source", "a", "--target", "b",
                       *out), str(tmp_path), "is a directory")
    assert not inv_path.exists()  # every check ran before the inversion was computed


def test_unwritable_save_inversion_is_reported_under_the_given_path(tmp_path, photo):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)  # root writes there anyway; sysfs refuses new files to everyone
    places = [p for p, ok in ((read_only, os.geteuid() != 0), (Path("/sys"), Path("/sys/kernel").is_dir())) if ok]
    try:
        for where in places:
            res = run("invert", "--model", "random-amused", "--image", photo, "--source", "a",
                      "--save-inversion", where / "inv.pt")
            one_line_error(res, f"--save-inversion {str(where / 'inv.pt')!r}", "writable folder")
            assert ".tmp" not in res.output  # not the atomic writer's temp file
    finally:
        read_only.chmod(0o700)
    if not places:
        pytest.skip("no folder here refuses this user's files")


def test_sweep_runs_a_task_and_names_bad_tasks_and_values(tmp_path):
    out = run("sweep", "shapes", "--reports", tmp_path, "--per-type", 1, "--lambdas", "0.7", "--taus", "0.8",
              "--steps", 4)
    assert out.exit_code == 0, out.output
    assert "6 units: 6 computed" in out.output and (tmp_path / "metrics" / "shapes_sweep.json").is_file()
    again = run("sweep", "shapes", "--reports", tmp_path, "--per-type", 1, "--lambdas", "0.7", "--taus", "0.8",
                "--steps", 4)
    assert "6 units: 0 computed, 6 already done" in again.output
    bad = run("sweep", "nope")
    assert bad.exit_code == 2 and "unknown sweep 'nope'; expected one of shapes, piebench" in bad.output
    bad = run("sweep", "shapes", "--reports", tmp_path, "--lambdas", "lots")
    assert bad.exit_code == 2 and "lambdas = 'lots' is not allowed" in bad.output


def test_demo_image_gives_an_input_the_shapes_model_reconstructs_exactly(tmp_path, shapes_case, monkeypatch):
    from dicelib.image import shapes_model
    from dicelib.image import shapesbench as sb

    ckpt, _, _ = shapes_case
    monkeypatch.setattr(shapes_model, "CHECKPOINT", ckpt)
    demo = tmp_path / "demo.png"
    res = run("demo-image", "--out", demo, "--edit-type", "change_shape", "--seed", "4")
    assert res.exit_code == 0, res.output
    rgb = pixels(demo)
    assert rgb.shape == (16, 16, 3)
    tokens = ((rgb.reshape(-1, 1, 3).astype(int) - sb.PALETTE[None]) ** 2).sum(-1).argmin(-1)
    source = res.output.split("--source \"")[1].split("\"")[0]
    assert sb.matches_prompt(tokens.reshape(16, 16), source)  # the printed prompt describes the image
    assert f"--image {demo}" in res.output and "dicelib edit --inversion inv.pt --target" in res.output
    res = run("invert", "--image", demo, "--source", source, "--save-inversion", tmp_path / "inv.pt",
              "--out", tmp_path / "recon.png", "--steps", "4")
    assert res.exit_code == 0, res.output
    assert "Warning" not in res.output and "reconstruction: 0 of 256 tokens differ from the input\n" in res.output
    assert np.array_equal(pixels(tmp_path / "recon.png"), rgb)
    one_line_error(run("demo-image", "--out", tmp_path / "x.png", "--edit-type", "recolour"), "recolour", "change_shape")


@pytest.mark.parametrize("seed", [0, 3])
def test_the_printed_demo_edit_is_clean(tmp_path, monkeypatch, seed):
    """The demo's commands, run as printed on the default model: the edited object takes the target's colour in
    place (the image parses as the target prompt, every object where the target scene has it) and every pixel
    outside the edit mask (where source and target scenes differ) keeps its source colour."""
    import shlex

    from dicelib.image import shapesbench as sb

    monkeypatch.chdir(tmp_path)  # the printed commands write inv.pt, recon.png, edited.png here
    res = run("demo-image", "--seed", seed)
    assert res.exit_code == 0, res.output
    assert "default model, shapes-oracle" in res.output and "--model shapes" in res.output
    commands = [shlex.split(line)[1:] for line in res.output.splitlines() if line.startswith("  dicelib ")]
    assert [c[0] for c in commands] == ["invert", "edit"] and "--model" not in commands[0] + commands[1]
    for command in commands:
        out = run(*command)
        assert out.exit_code == 0, out.output
    source, target = sb.random_case(np.random.default_rng(seed), "change_colour")
    assert sb.prompt(source) in res.output and sb.prompt(target) in res.output
    tokens = ((pixels("edited.png").reshape(-1, 1, 3).astype(int) - sb.PALETTE[None]) ** 2).sum(-1).argmin(-1)
    tokens, before, after = tokens.reshape(16, 16), sb.render(source), sb.render(target)
    assert np.array_equal(pixels("recon.png"), sb.to_rgb(before))  # the inversion reconstructs the input exactly
    outside = before == after
    assert outside.sum() > 200 and np.array_equal(tokens[outside], before[outside])  # nothing else moves
    assert sb.matches_prompt(tokens, sb.prompt(target), sizes=True)  # changed as asked
    seen = sb.parse(tokens)["objects"]
    assert sorted((o.colour, o.row, o.col) for o in seen) == sorted((o.colour, o.row, o.col) for o in target.objects)


def test_models_reports_weights_truthfully(monkeypatch, tmp_path):
    from dicelib.image import shapes_model

    monkeypatch.setattr(shapes_model, "CHECKPOINT", tmp_path / "absent.pt")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))  # nothing cached
    res = run("models")
    assert res.exit_code == 0, res.output
    status = {row[0]: row[2] for row in (re.split(r"\s{2,}", line) for line in res.output.splitlines())}
    assert status["shapes-oracle"] == "needs none" and status["random-paella"] == "needs none (random)"
    assert status["shapes"] == "missing (train-shapes)"
    assert status["paella"] == status["amused/amused-256"] == status["microsoft/vq-diffusion-ithq"] == "missing"
    assert "random weights" not in res.output
    monkeypatch.setattr(shapes_model, "CHECKPOINT", Path(dicelib.__file__))  # any file on disk
    assert re.search(r"^shapes +shapes +present ", run("models").output, re.M)


def test_an_image_of_another_size_is_cropped_and_resized_with_a_warning_never_squashed(tmp_path, shapes_case,
                                                                                        monkeypatch):
    from dicelib.image import shapes_model
    from dicelib.image import shapesbench as sb

    ckpt, scene, prompt = shapes_case  # scene.png: 64x64, a 4x nearest upscale
    monkeypatch.setattr(shapes_model, "CHECKPOINT", ckpt)
    wide = np.zeros((64, 96, 3), np.uint8)  # the scene with black bands left and right: squashing would shift it
    wide[:, 16:80] = pixels(scene)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    res = run("invert", "--image", tmp_path / "wide.png", "--source", prompt, "--save-inversion", tmp_path / "inv.pt",
              "--out", tmp_path / "recon.png", "--steps", "4")
    assert res.exit_code == 0, res.output
    assert "Warning: " in res.output and "is 96x64 but the model works on 16x16 images" in res.output
    assert "centre-cropped to 64x64 and resized to 16x16" in res.output
    assert "differ from the input as resized to 16x16" in res.output  # not reported as the input itself
    want = np.asarray(Image.open(scene).resize((16, 16), Image.Resampling.NEAREST).convert("RGB"))
    assert np.array_equal(pixels(tmp_path / "recon.png"), want)  # the centre square, not a squashed image
    res = run("edit", "--model", "random-amused", "--image", tmp_path / "wide.png", "--source", "a cat", "--target",
              "a dog", "--out", tmp_path / "dog.png", "--steps", "4")
    assert res.exit_code == 0, res.output
    assert "is 96x64 but the model works on 8x8 images: it is centre-cropped to 64x64 and resized to 8x8" in res.output
    assert sb.SIZE == 16
