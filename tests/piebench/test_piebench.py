"""PIE-Bench loader on the tiny fixture: prompts, bracketed words, RLE masks, edit types, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dicelib.errors import DiceError
from dicelib.piebench.loader import EDIT_TYPES, decode_rle, encode_rle, load_piebench, parse_prompt, type_counts

FIXTURE = Path(__file__).parents[1] / "fixtures" / "piebench"


def test_fixture_loads_one_case_per_edit_type():
    cases = load_piebench(FIXTURE)
    assert [c.edit_type for c in cases] == list(range(10))
    assert set(type_counts(cases)) == set(EDIT_TYPES.values())
    assert all(c.image_path.is_file() for c in cases)


def test_case_fields_and_mask_match_the_drawn_object():
    case = load_piebench(FIXTURE, edit_types=[1])[0]
    assert case.edit_type_name == "change object"
    assert case.source_prompt == "a red circle on a blue background"
    assert case.target_prompt == "a red square on a blue background"
    assert (case.source_words, case.target_words, case.blended_words) == (("circle",), ("square",), ("circle", "square"))
    image = case.image()
    assert image.shape == (1, 3, 32, 32)
    inner = case.mask(border=False)
    assert inner.shape == (32, 32) and 0 < inner.sum() < inner.size
    red = image[0, 0].numpy()
    assert red[inner].mean() > 0.7 > red[~inner].mean()  # the mask covers the red circle only
    full = case.mask()
    assert full[0].all() and full[:, -1].all() and (full & ~inner).sum() == 4 * 31  # the benchmark's border


def test_filters_and_limit():
    assert [c.edit_type for c in load_piebench(FIXTURE, edit_types=[8, 2])] == [2, 8]
    assert len(load_piebench(FIXTURE, limit=3)) == 3


def test_parse_prompt_strips_brackets_and_keeps_phrases():
    assert parse_prompt("[a watercolor painting of]  a red [circle]") == (
        "a watercolor painting of a red circle", ("a watercolor painting of", "circle"))
    assert parse_prompt("no brackets") == ("no brackets", ())


@settings(max_examples=50, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 9), st.integers(1, 9))))
def test_rle_roundtrip(mask):
    assert np.array_equal(decode_rle(encode_rle(mask), mask.shape, border=False), mask)


def test_rle_runs_are_clipped_and_bad_encodings_rejected():
    assert decode_rle([2, 100], (2, 3), border=False).sum() == 4
    with pytest.raises(DiceError, match="pairs"):
        decode_rle([1, 2, 3], (2, 2))
    with pytest.raises(DiceError, match="negative"):
        decode_rle([-1, 2], (2, 2))


def test_loader_errors(tmp_path):
    with pytest.raises(DiceError, match="mapping_file.json"):
        load_piebench(tmp_path)
    (tmp_path / "mapping_file.json").write_text("{not json")
    with pytest.raises(DiceError, match="not valid JSON"):
        load_piebench(tmp_path)
    (tmp_path / "mapping_file.json").write_text(json.dumps({"1": {"image_path": "x.jpg"}}))
    with pytest.raises(DiceError, match="lacks"):
        load_piebench(tmp_path)
    entry = {"image_path": "x.jpg", "original_prompt": "a", "editing_prompt": "b", "editing_type_id": "12", "mask": []}
    (tmp_path / "mapping_file.json").write_text(json.dumps({"1": entry}))
    with pytest.raises(DiceError, match="editing_type_id 12"):
        load_piebench(tmp_path)


@pytest.mark.parametrize("name", ["random-amused", "random-paella"])
def test_experiment_tables_on_the_fixture(tmp_path, name):
    """Tables 1-3 from tiny random models: exact DICE reconstruction, absent metrics reported as absent."""
    import torch

    from dicelib.registry import load_model
    from dicelib.piebench.metrics import PerceptualMetrics
    from dicelib.piebench.experiment import Settings, run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, spec = load_model(name, "cpu")
        absent = PerceptualMetrics(absent={"clip": "no weights", "structure": "no weights", "lpips": "no weights"})
        cases = load_piebench(FIXTURE, limit=2)
        metrics = run(model, spec, cases, Settings(steps=4), absent, tmp_path, progress=False)
    finally:
        torch.set_num_threads(threads)
    dice, baseline = metrics["table1_reconstruction"]
    assert dice["token accuracy %"] == 100.0 and dice["PSNR (vs VQ tokens)"] == "inf"
    assert baseline["token accuracy %"] < 100.0
    assert metrics["cases"] == 2 and set(metrics["absent"]) == {"clip", "structure", "lpips"}
    assert metrics["table2_editing"][0]["CLIP whole"] is None  # absent, not 0
    table3 = (tmp_path / "table3_background.md").read_text()
    assert "absent" in table3 and "SSIM x1e2" in table3
    for name in ("table1_reconstruction", "table2_editing", "table3_background", "dice_by_edit_type", "per_case"):
        assert (tmp_path / f"{name}.csv").is_file()


def test_the_sweep_writes_the_serial_run_bytes_and_a_grid_labels_its_rows(tmp_path):
    """`main` runs through dicelib.sweep: with one grid point its outputs equal `run`'s byte for byte; a rerun
    computes nothing; a grid labels each DICE row with its overrides and regeneration with the inversion's."""
    import torch

    from dicelib.piebench.experiment import Settings, main, run
    from dicelib.piebench.metrics import PerceptualMetrics
    from dicelib.registry import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, spec = load_model("random-amused", "cpu")
        run(model, spec, load_piebench(FIXTURE, limit=2), Settings(steps=4), PerceptualMetrics.from_cache(None, None),
            tmp_path / "serial", progress=False)
        args = ["--data", FIXTURE, "--model", "random-amused", "--limit", 2, "--steps", 4, "--clip", "", "--dino", "",
                "--device", "cpu"]
        main([str(a) for a in args + ["--out", tmp_path / "sweep"]])
        before = {p.name: p.read_bytes() for p in (tmp_path / "sweep").glob("*.*")}
        main([str(a) for a in args + ["--out", tmp_path / "sweep"]])  # resumes: every unit recorded
        grid = main([str(a) for a in args + ["--out", tmp_path / "grid", "--grid", "[{lambda1: 0.5}, {lambda1: 0.9, tau: 0.6}]"]])
    finally:
        torch.set_num_threads(threads)
    serial = {p.name: p.read_bytes() for p in (tmp_path / "serial").glob("*.*")}
    assert len(serial) == 10 and {name: before[name] for name in serial} == serial
    assert {p.name: p.read_bytes() for p in (tmp_path / "sweep").glob("*.*")} == before
    assert len(list((tmp_path / "sweep" / "records").glob("*.json"))) == 2
    methods = [row["method"] for row in grid["table1_reconstruction"]]
    assert methods == ["DICE (lambda1=0.5) + random-amused-tiny", "masked regeneration + random-amused-tiny",
                       "DICE (lambda1=0.9, tau=0.6) + random-amused-tiny",
                       "masked regeneration (tau=0.6) + random-amused-tiny"]
    assert grid["grid"] == [{"lambda1": 0.5}, {"lambda1": 0.9, "tau": 0.6}]
    assert grid["table1_reconstruction"][0]["token accuracy %"] == 100.0  # reconstruction exact in every unit
