"""ShapesBench: rendering, the exact parser, prompts and the edit-case table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicelib.image import shapesbench as sb
from dicelib.image import benchmark_build as sbd
from dicelib.errors import DiceError


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_parser_reads_every_random_scene_back_exactly(seed):
    scene = sb.random_scene(np.random.default_rng(seed))
    assert sb.valid(scene)
    img = sb.render(scene)
    seen = sb.parse(img)
    assert seen["unknown"] == 0
    assert seen["background"] == scene.background
    assert seen["objects"] == list(scene.objects)  # shape, colour, size and position
    assert sb.matches_prompt(img, sb.prompt(scene), sizes=True)


def test_templates_are_distinct_and_prompts_round_trip():
    masks = [t.tobytes() + bytes(t.shape) for t in sb.TEMPLATES.values()]
    assert len(set(masks)) == len(masks)
    scene = sb.Scene("green", sb.ordered([sb.Obj("square", "blue", "small", 10, 9), sb.Obj("circle", "red", "large", 0, 0)]))
    text = sb.prompt(scene)
    assert text == "a large red circle and a small blue square on a green background"
    assert sb.parse_prompt(text) == ("green", [("large", "red", "circle"), ("small", "blue", "square")])


def test_matches_prompt_detects_wrong_content():
    scene = sb.Scene("green", (sb.Obj("square", "blue", "small", 2, 2),))
    img = sb.render(scene)
    assert sb.matches_prompt(img, "a small blue square on a green background")
    assert sb.matches_prompt(img, "a large blue square on a green background")  # size is not checked by default
    assert not sb.matches_prompt(img, "a large blue square on a green background", sizes=True)
    assert not sb.matches_prompt(img, "a small red square on a green background")
    assert not sb.matches_prompt(img, "a small blue circle on a green background")
    assert not sb.matches_prompt(img, "a small blue square on a white background")
    broken = img.copy()
    broken[2, 2] = sb.COLOURS.index("green")  # a square with a missing corner matches no template
    assert sb.parse(broken)["unknown"] == 1
    assert not sb.matches_prompt(broken, "a small blue square on a green background")
    with pytest.raises(DiceError, match="not a ShapesBench prompt"):
        sb.parse_prompt("a cat")


@pytest.mark.parametrize("edit_type", sb.EDIT_TYPES)
def test_edit_cases_change_exactly_one_thing(edit_type):
    rng = np.random.default_rng(3)
    for _ in range(20):
        source, target = sb.random_case(rng, edit_type)
        assert sb.valid(source) and sb.valid(target)
        a, b = sb.render(source), sb.render(target)
        assert (a != b).any()
        kept = {(o.shape, o.colour, o.size) for o in source.objects} & {(o.shape, o.colour, o.size) for o in target.objects}
        if edit_type == "change_background":
            assert source.background != target.background and source.objects == target.objects
        else:
            assert source.background == target.background
        if edit_type == "add_object":
            assert len(source.objects) == 1 and len(target.objects) == 2 and len(kept) == 1
        elif edit_type == "remove_object":
            assert len(source.objects) == 2 and len(target.objects) == 1 and len(kept) == 1
        elif edit_type != "change_background":
            assert len(source.objects) == len(target.objects) and len(kept) == len(source.objects) - 1
        if edit_type == "change_size":  # the centre stays where it was
            changed = [o for o in source.objects if o not in target.objects][0]
            new = [o for o in target.objects if o not in source.objects][0]
            assert changed.centre() == new.centre() and changed.size != new.size


def test_case_table_is_deterministic_balanced_and_split(tmp_path):
    cases, grids = sbd.build_cases(cases_per_type=6, seed=5, val_per_type=1, test_per_type=2)
    again, grids2 = sbd.build_cases(cases_per_type=6, seed=5, val_per_type=1, test_per_type=2)
    assert cases.equals(again) and all(np.array_equal(grids[k], grids2[k]) for k in grids)
    assert cases.groupby("type").size().to_dict() == {t: 6 for t in sb.EDIT_TYPES}
    assert cases.groupby("split").size().to_dict() == {"test": 12, "val": 6, "train": 18}
    assert cases["id"].is_unique
    np.testing.assert_array_equal(grids["mask"], grids["source"] != grids["target"])
    row = cases.iloc[0]
    src = np.array([int(c) for c in row["source"]]).reshape(16, 16)
    np.testing.assert_array_equal(src, grids["source"][0])
    assert sb.matches_prompt(grids["target"][0], row["target_prompt"], sizes=True)
    assert row["mask_pixels"] == grids["mask"][0].sum()
    sbd.save(cases, grids, tmp_path, previews=1)
    loaded, lgrids = sbd.load(tmp_path, split="test")
    assert len(loaded) == 12 and set(loaded["split"]) == {"test"} and lgrids["source"].shape == (12, 16, 16)
    assert (tmp_path / "previews" / "add_object.png").exists()
    held = sbd.heldout_prompts(cases)
    assert set(cases.loc[cases["split"] == "test", "source_prompt"]) <= held
    sub, sgrids = sbd.subset(loaded, lgrids, 1)
    assert len(sub) == 6 and sgrids["mask"].shape[0] == 6
    with pytest.raises(DiceError, match="cases_per_type"):
        sbd.build_cases(cases_per_type=2, val_per_type=1, test_per_type=2)
    with pytest.raises(DiceError, match="no ShapesBench"):
        sbd.load(tmp_path / "missing")


def test_tolerant_parser_accepts_renders_and_one_pixel_perturbations():
    rng = np.random.default_rng(11)
    for i in range(40):
        scene = sb.random_scene(rng)
        img, text = sb.render(scene).ravel(), sb.prompt(scene)
        assert sb.matches_prompt_tolerant(img, text, sizes=True)
        for j in rng.choice(256, 6, replace=False):  # any pixel, any other colour
            bad = img.copy()
            bad[j] = (img[j] + rng.integers(1, sb.NUM_CLASSES)) % sb.NUM_CLASSES
            assert sb.matches_prompt_tolerant(bad, text, sizes=True), (text, j, bad[j])


@pytest.mark.parametrize("edit_type", sb.EDIT_TYPES)
def test_tolerant_parser_rejects_every_edit_of_the_prompt(edit_type):
    """The target render of an edit never passes for the source prompt (sizes checked for change_size)."""
    rng = np.random.default_rng(12)
    for _ in range(30):
        source, target = sb.random_case(rng, edit_type)
        assert not sb.matches_prompt_tolerant(sb.render(target), sb.prompt(source), sizes=True)
        if edit_type != "change_size":
            assert not sb.matches_prompt_tolerant(sb.render(target), sb.prompt(source))


def test_tolerant_parser_limits():
    scene = sb.Scene("green", (sb.Obj("square", "red", "large", 2, 2),))
    img, text = sb.render(scene), sb.prompt(scene)
    blob = img.copy()
    blob[2:9, 2:9] = 2  # the square's pixels, then four more in a row: IoU 49 / 53
    blob[10, 2:6] = 2
    assert sb.matches_prompt_tolerant(blob, text)
    blob[11:14, 2:9] = 2  # a blob: IoU 49 / 74
    assert not sb.matches_prompt_tolerant(blob, text)
    stray = img.copy()
    stray[12:14, 12:14] = 4  # four blue pixels: more than 3 strays
    assert not sb.matches_prompt_tolerant(stray, text)
    stray[13, 13] = 3
    assert sb.matches_prompt_tolerant(stray, text)
