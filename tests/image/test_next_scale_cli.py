"""`dicelib invert/edit --method next_scale` on shapes-oracle, end to end on a `dicelib demo-image` image."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from dicelib.cli import app
from dicelib.image import shapesbench as sb

runner = CliRunner()


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def tokens(path) -> np.ndarray:
    """Return the palette ids [16, 16] of a written image."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return ((rgb[..., None, :] - sb.PALETTE.astype(int)) ** 2).sum(-1).argmin(-1)


def test_next_scale_cli_reconstructs_a_demo_image_exactly_and_edits_towards_the_target(tmp_path):
    demo = tmp_path / "demo.png"
    res = run("demo-image", "--out", demo, "--edit-type", "change_colour", "--seed", "3")
    assert res.exit_code == 0, res.output
    source, target = sb.random_case(np.random.default_rng(3), "change_colour")
    src, tgt = sb.prompt(source), sb.prompt(target)
    res = run("edit", "--model", "shapes-oracle", "--method", "next_scale", "--image", demo, "--source", src,
              "--target", src, "--lambda1", "1", "--lambda2", "0", "--out", tmp_path / "recon.png",
              "--save-inversion", tmp_path / "inv.pt")
    assert res.exit_code == 0, res.output
    assert "edit: 0 of 906 tokens changed" in res.output  # every scale of the pyramid, token for token
    assert np.array_equal(tokens(tmp_path / "recon.png"), sb.render(source))
    res = run("edit", "--model", "shapes-oracle", "--inversion", tmp_path / "inv.pt", "--target", tgt,
              "--lambda1", "0.7", "--start-scale", "3", "--out", tmp_path / "edited.png")
    assert res.exit_code == 0, res.output
    out, want, before = tokens(tmp_path / "edited.png"), sb.render(target), sb.render(source)
    mask = want != before
    assert (out[mask] == want[mask]).mean() > 0.5  # the recoloured pixels moved to the target colour
    res = run("invert", "--model", "shapes-oracle", "--method", "next_scale", "--image", demo, "--source", src,
              "--pseudo-inverse", "onehot", "--save-inversion", tmp_path / "inv2.pt", "--out", tmp_path / "r2.png")
    assert res.exit_code == 0, res.output
    assert "reconstruction: 0 of 906 tokens differ" in res.output


def test_next_scale_on_a_model_that_does_not_serve_it_is_a_one_line_error(tmp_path):
    demo = tmp_path / "demo.png"
    run("demo-image", "--out", demo)
    res = run("edit", "--model", "random-amused", "--method", "next_scale", "--image", demo, "--source", "a",
              "--target", "b", "--out", tmp_path / "x.png")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "serves masked, not 'next_scale'" in res.output
