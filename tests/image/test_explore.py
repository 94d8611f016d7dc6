"""The explorer's plain update (one test per control), its worker that lets the latest request win, and its widgets."""

from __future__ import annotations

import re
import threading
from dataclasses import replace

import numpy as np
import pytest

from dicelib.errors import DiceError
from dicelib.image import explore as ex
from dicelib.image import shapesbench as sb

BASE = ex.Controls()  # 16 steps, tau 0.8, lai; change_shape-014 of the test split on shapes-oracle: circle -> square


@pytest.fixture(scope="module")
def state():
    return ex.ExploreState()


def _run(state, **values):
    """Return (view, whether this update inverted) for BASE with `values`."""
    before = state.inversions_run
    view = ex.update(state, replace(BASE, **values))
    assert view.inverted == (state.inversions_run == before + 1)
    return view


def test_first_update_inverts_then_lambda_moves_reuse_the_inversion(state):
    first = ex.update(state, BASE)
    assert first.case.id == "change_shape-014" and first.target_prompt == first.case.target_prompt
    assert first.edit.shape == (16, 16) and first.edit.dtype == np.uint8
    runs = state.inversions_run
    for lam in (0.0, 0.3, 1.0):
        view = ex.update(state, replace(BASE, lambda1=lam))
        assert not view.inverted
    assert state.inversions_run == runs, "moving lambda1 must not invert again"


def test_lambda1_changes_the_edit_and_the_scores(state):
    low, high = _run(state, lambda1=0.0), _run(state, lambda1=1.0)
    assert not np.array_equal(low.edit, high.edit)
    assert high.scores["edit_accuracy"] == 1.0 and high.scores["preservation"] == 1.0  # the oracle lands on the target
    assert low.scores["changed_outside"] > 0 == high.scores["changed_outside"]  # without latents the square moves
    assert low.scores["parses_as_target"] == 1.0  # the exact denoiser follows the prompt at any lambda1


def test_lambda2_unlinked_with_the_source_prompt_reconstructs(state):
    view = _run(state, lambda1=1.0, lambda2=0.0, preset=ex.FREE_TEXT, prompt="a  large green circle on a purple background")
    assert view.target_prompt == view.case.source_prompt  # spaces normalised
    assert np.array_equal(view.edit, view.case.source)
    noisy = _run(state, lambda1=1.0, lambda2=1.0)
    assert not noisy.inverted


@pytest.mark.parametrize("method", list(ex.METHODS))
@pytest.mark.parametrize("pseudo_inverse", ["onehot", "model", "lai"])
def test_method_and_pseudo_inverse_invert_again_and_reconstruct_exactly(state, method, pseudo_inverse):
    view = _run(state, method=method, pseudo_inverse=pseudo_inverse, seed=21, preset=ex.FREE_TEXT,
                prompt="a large green circle on a purple background", lambda1=1.0, lambda2=0.0)
    assert view.inverted, "each method and pseudo-inverse has its own inversion"
    assert np.array_equal(view.edit, view.case.source), "the central invariant holds in the explorer"


def test_tau_inverts_again_and_limits_what_can_change(state):
    views = {tau: _run(state, tau=tau, lambda1=0.0, seed=22) for tau in (0.2, 1.0)}
    assert all(v.inverted for v in views.values())
    assert views[0.2].scores["changed_outside"] < views[1.0].scores["changed_outside"]
    again = _run(state, tau=0.2, lambda1=0.5, seed=22)
    assert not again.inverted, "a tau seen before is cached"


def test_seed_and_steps_invert_again(state):
    a = _run(state, seed=3)
    b = _run(state, seed=3, lambda1=0.1)
    assert a.inverted and not b.inverted
    assert _run(state, steps=4).inverted


def test_injection_reuses_the_inversion_and_changes_the_edit(state):
    views = [_run(state, injection=inj, lambda1=0.3) for inj in ("add", "variance_preserving")]
    assert not views[1].inverted
    assert not np.array_equal(views[0].edit, views[1].edit), "sqrt(0.3) > 0.3: variance_preserving weighs the latents more"
    with pytest.raises(DiceError, match="injection"):
        ex.update(state, replace(BASE, injection="mul"))


def test_guidance_is_part_of_the_inversion(state):
    c = replace(BASE, steps=2, tau=0.5)  # the oracle's null prompt is costly: keep it short
    ex.update(state, c)
    guided = _run(state, steps=2, tau=0.5, cfg_scale=2.0)
    assert guided.inverted
    assert ex.inversion_key(replace(c, cfg_scale=1.0), guided.case) == ex.inversion_key(c, guided.case)  # 1 = off


def test_model_dropdown_runs_the_learned_model(state):
    view = _run(state, model="shapes", lambda1=1.0, lambda2=0.0, pseudo_inverse="onehot", preset=ex.FREE_TEXT,
                prompt="a large green circle on a purple background")
    assert view.inverted and np.array_equal(view.edit, view.case.source)
    with pytest.raises(DiceError, match="unknown model 'var'"):
        ex.update(state, replace(BASE, model="var"))


def test_source_case_pickers(state):
    view = _run(state, split="val", edit_type="add_object", index=2)
    assert view.case.id == "add_object-022"  # val holds the add_object cases 20..29
    assert len(view.case.scene.objects) == 1 and view.target_prompt.count(" and ") == 1
    with pytest.raises(DiceError, match="index 20 is outside the 20 test cases"):
        ex.update(state, replace(BASE, index=20))
    with pytest.raises(DiceError, match="unknown split"):
        ex.update(state, replace(BASE, split="dev"))


def test_source_drawn_from_a_seed(state):
    a, b = _run(state, source="seed", source_seed=5), _run(state, source="seed", source_seed=5, lambda1=0.2)
    assert a.case.id == "change_shape@seed5" and a.inverted and not b.inverted
    assert sb.prompt(a.case.scene) == a.case.source_prompt and np.array_equal(sb.render(a.case.scene), a.case.source)
    assert not np.array_equal(_run(state, source="seed", source_seed=6).case.source, a.case.source)


@pytest.mark.parametrize("preset", sb.EDIT_TYPES)
def test_presets_apply_an_edit_type_to_the_source(state, preset):
    if preset == "remove_object":  # the base source has one object
        with pytest.raises(DiceError, match="'remove_object' does not apply to this source"):
            ex.update(state, replace(BASE, preset=preset))
        return
    view = _run(state, preset=preset)
    assert not view.inverted, "the target prompt is not part of the inversion"
    assert view.target is not None and view.target_prompt != view.case.source_prompt
    assert sb.matches_prompt(view.target, view.target_prompt, sizes=True)
    assert not np.isnan(view.scores["edit_accuracy"])


def test_free_text_is_checked_by_the_grammar(state):
    view = _run(state, preset=ex.FREE_TEXT, prompt="a small green square on a purple background")
    assert view.target is not None and view.mask.sum() > 0  # same object count: positions kept, a target exists
    added = _run(state, preset=ex.FREE_TEXT, prompt="a large green square and a small red circle on a purple background")
    assert added.target is None and np.isnan(added.scores["edit_accuracy"]) and added.scores["parses_as_target"] in (0, 1)
    for bad, why in [("", "empty"), ("a red thing", "not a ShapesBench prompt"),
                     ("a large pink square on a purple background", "cannot read object"),
                     ("a large green square on a green background", "distinct colours")]:
        with pytest.raises(DiceError, match=why):
            ex.update(state, replace(BASE, preset=ex.FREE_TEXT, prompt=bad))


@pytest.mark.parametrize("field,value", [("lambda1", 1.5), ("lambda2", -0.1), ("tau", 0.0), ("steps", 0), ("seed", -1),
                                         ("method", "next_scale"), ("pseudo_inverse", "none"), ("cfg_scale", 0.5),
                                         ("source", "file"), ("preset", "swap")])
def test_bad_controls_name_the_value(state, field, value):
    with pytest.raises(DiceError, match=re.escape(repr(value))):
        ex.update(state, replace(BASE, **{field: value}))


def test_reports_stages_in_order_and_inverting_only_on_a_miss(state):
    seen = []
    ex.update(state, replace(BASE, seed=11), seen.append)
    assert seen == list(ex.STAGES)
    seen.clear()
    ex.update(state, replace(BASE, seed=11, lambda1=0.2), seen.append)
    assert seen == [s for s in ex.STAGES if s != "inverting"]


def test_notebook_tables(state):
    table, edits = ex.lambda_table(state, BASE, [0.0, 1.0])
    assert list(table["lambda2"]) == [1.0, 0.0] and len(edits) == 2
    taus = ex.tau_table(state, BASE, [0.2, 1.0], lambda1=0.0)
    assert taus["noised_at_start"].iloc[0] < taus["noised_at_start"].iloc[1] == 1.0
    recon = ex.reconstruction_table(state, BASE, ["shapes-oracle"], ["onehot", "model"])
    assert list(recon["pixels_wrong"]) == [0, 0] and recon["clean_prediction_wrong"].iloc[1] == 0


# --- the worker: the latest request wins ---------------------------------------------------------------


def test_latest_drops_superseded_results_and_skips_waiting_requests():
    from dicelib.image.explore_ui import Latest

    gate, started, published = threading.Event(), threading.Event(), []

    def compute(request):
        if request == "slow":
            started.set()
            gate.wait(5)
        return request.upper()

    latest = Latest(compute, lambda gen, result: published.append((gen, result)))
    latest.submit("slow")
    assert started.wait(5)
    latest.submit("b")  # waits, then is replaced by c before it starts
    latest.submit("c")
    gate.set()
    assert latest.wait(5)
    assert published == [(3, "C")] and latest.dropped == 1 and latest.skipped == 1


def test_latest_publishes_errors():
    from dicelib.image.explore_ui import Latest

    published = []
    latest = Latest(lambda r: 1 / r, lambda gen, result: published.append(result))
    latest.submit(0)
    assert latest.wait(5)
    assert isinstance(published[0], ZeroDivisionError)


# --- the widget layer ----------------------------------------------------------------------------------


def test_widgets_follow_the_controls(state):
    from dicelib.image import explore_ui as ui

    e = ui.Explorer(state, BASE)
    first = e.images["edit"].value
    assert e.view is not None and e.controls() == BASE and "ready" in e.status.value and " ms" not in e.scores.value
    e.set(lambda1=0.0)
    assert e.latest.wait(10)
    assert e.inputs["lambda2"].value == 1.0 and e.view.controls.lambda2 is None and e.images["edit"].value != first
    assert "done in" in e.status.value and "ms, cached inversion" in e.scores.value
    e.set(linked=False, lambda2=0.3)
    assert e.latest.wait(10) and e.view.controls.lambda2 == 0.3
    e.set(preset=ex.FREE_TEXT)  # starts from the current target prompt
    assert e.latest.wait(10) and e.inputs["prompt"].value == e.view.target_prompt
    e.set(prompt="a green blob")
    assert e.latest.wait(10) and "not a ShapesBench prompt" in e.status.value
    e.set(source="seed")
    assert e.inputs["index"].layout.display == "none" and e.inputs["source_seed"].layout.display is None


def test_pngs_are_scaled_palette_images(state):
    from PIL import Image
    import io

    from dicelib.image import explore_ui as ui

    view = ex.update(state, replace(BASE, lambda1=0.0))
    img = np.asarray(Image.open(io.BytesIO(ui.png(view.edit, scale=2))))
    assert img.shape == (32, 32, 3) and np.array_equal(img[::2, ::2], sb.to_rgb(view.edit))
    diff = np.asarray(Image.open(io.BytesIO(ui.difference_png(view, scale=1))))
    outside = view.changed & ~view.mask
    assert outside.any() and (diff[outside] == ui.CHANGED_OUTSIDE).all()
    assert (diff[~view.changed] == 255).all()
