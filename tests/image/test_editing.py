"""Benchmark sweeps and reports of the image track on a tiny untrained shapes model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dicelib.image import editing as ee
from dicelib.image import reconstruction as re_
from dicelib.image import shapes_model as smod
from dicelib.image import benchmark_build as sbd
from dicelib.image import walkthrough as wt


@pytest.fixture(scope="module")
def bench():
    torch.manual_seed(0)
    model = smod.ShapesDenoiser(smod.ShapesConfig(dim=32, depth=1, heads=2, pixel_dim=8, num_steps=4)).eval()
    cases, grids = sbd.build_cases(cases_per_type=1, seed=2, val_per_type=0, test_per_type=1)
    return model, cases, grids


def test_reconstruction_is_exact_for_onehot_and_lai_with_both_methods(bench):
    model, cases, grids = bench
    per_case, mismatch, outputs = re_.reconstruction(model, cases, grids, steps=3, cfg_scale=2.0)
    exact = per_case[per_case["pseudo_inverse"].isin(["onehot", "lai"])]
    assert exact["exact"].all() and (exact["token_accuracy"] == 1.0).all() and (exact["psnr"] == 100.0).all()
    assert set(mismatch) == {"masked/model", "multinomial/model"} and all(0 <= v <= 1 for v in mismatch.values())
    assert re_.reconstruction_report(per_case) == {"exact": 1.0}  # the headline: small and flat
    table = re_.summary_table(per_case, mismatch).set_index(["method", "pseudo_inverse"])
    assert table.loc[("masked", "onehot"), "token_accuracy"] == 1.0 and table.loc[("multinomial", "lai"), "min_token_accuracy"] == 1.0
    assert table.loc[("masked", "model"), "mismatch_rate"] == pytest.approx(mismatch["masked/model"])
    assert np.isnan(table.loc[("regeneration", "none"), "mismatch_rate"])
    assert outputs["regeneration"].shape == (6, 16, 16)


def test_runner_edits_scores_and_caches_inversions(bench):
    model, cases, grids = bench
    runner = ee.EditRunner(model, cases, grids)
    s = ee.EditSettings(steps=3, tau=0.8, cfg_scale=2.0, pseudo_inverse="lai", noise="mask")
    same = runner.edit(replace(s, lambda1=1.0, lambda2=0.0), cond=runner.source_cond)
    np.testing.assert_array_equal(same, runner.source.numpy())  # onehot-exact invariant through the runner (LAI)
    lam = ee.sweep(runner, s, "lambda1", [0.5, 1.0], label="lambda")
    assert len(runner._inversions) == 1  # the lambda sweep inverted once
    assert set(lam["type"]) == {"overall", *cases["type"]} and len(lam) == 2 * 7
    assert lam[["edit_accuracy", "preservation", "exact_parse"]].stack().between(0, 1).all()
    base = ee.baselines(runner, s)
    inpaint = base[(base["method"] == "inpainting_oracle_mask")]
    assert (inpaint["preservation"] == 1.0).all()  # everything outside the true mask is kept
    dice = ee.summarize(runner.score(runner.edit(s)), [])
    report = ee.editing_report(dice)
    assert list(report) == ["exact_parse", "preservation", "edit_score"]  # flat: DICE overall only
    assert report["edit_score"] == round(dice.loc[dice["type"] == "overall", "edit_score"].item(), 4)
    chosen = ee.settings_table(s, seed=0).set_index("setting")["value"]
    assert chosen["tau"] == "0.8" and chosen["seed"] == "0" and chosen["pseudo_inverse"] == "lai"
    plots = ee.sweep_plots({"lambda": lam})
    assert list(plots["lambda"].columns) == ["lambda", "edit_accuracy", "preservation", "edit_score"]
    assert plots["lambda"]["lambda"].tolist() == [0.5, 1.0]  # one row per swept value (overall), numeric x
    rows = ee.example_rows(runner.cases)
    assert len(rows) == 6 and runner.cases["type"].iloc[rows].is_unique
    cols = ee.example_columns(runner, s, runner.edit(s), rows[:2])
    assert set(cols) == {"oracle target", "DICE", *ee.BASELINES} and cols["DICE"].shape == (2, 16, 16)


def test_schedules_and_walkthrough_helpers(bench):
    model, cases, grids = bench
    runner = ee.EditRunner(model, *sbd.subset(cases, grids, 1))
    s = ee.EditSettings(steps=4, tau=1.0, cfg_scale=None, pseudo_inverse="onehot")
    curves = ee.schedule_curves(runner.inversion(s), ["uniform", "linear", "mi"], [0.5], 1.0)
    lin = curves[curves["schedule"] == "linear"]["lambda1"].to_numpy()
    assert lin[0] == pytest.approx(0.5) and lin[-1] == pytest.approx(1.0)
    table = ee.schedule_sweep(runner, s, ["uniform", "exponential"], [0.5, 0.9])
    report = ee.schedule_report(table)
    overall = table[table["type"] == "overall"]
    assert report["schedule"] in {"uniform", "exponential"} and report["edit_score"] == round(overall["edit_score"].max(), 4)
    assert set(report) == {"schedule", "lambda1", *ee.HEADLINE}
    wide = ee.schedule_plot(table)  # one column per schedule: one line each in `dvc plots`
    assert list(wide.columns) == ["lambda1", "uniform", "exponential"] and wide["lambda1"].tolist() == [0.5, 0.9]
    assert wide.set_index("lambda1").loc[0.9, "exponential"] == pytest.approx(
        overall[(overall["schedule"] == "exponential") & (overall["lambda1"] == 0.9)]["edit_score"].item())
    inv = runner.inversion(s)
    assert wt.states(inv).shape == (4, 16, 16) and wt.masks(inv)[-1].all()  # tau = 1: fully noised at the top
    z = wt.latent_at_source(inv)
    assert z.shape == (4, 16, 16) and (z >= -1e-5).all()  # onehot latent at the source = -log p >= 0
    edits = wt.edits_over_lambda(model, inv, runner.target_cond, [0.0, 1.0])
    assert edits.shape == (2, len(runner.cases), 16, 16)
    table = wt.lambda_table(edits[:, 0], [0.0, 1.0], grids["source"][0], grids["target"][0], grids["mask"][0])
    assert list(table.columns) == ["lambda1", "lambda2", "edit_accuracy", "preservation"]


def test_bootstrap_intervals_cover_the_mean_and_shrink_with_cases():
    rng = np.random.default_rng(0)
    small, large = rng.random(10), rng.random(1000)
    lo, hi = ee.bootstrap_ci(small, seed=1)
    assert lo < small.mean() < hi
    lo2, hi2 = ee.bootstrap_ci(large, seed=1)
    assert hi2 - lo2 < (hi - lo) / 3  # about 1/sqrt(100) as wide
    assert ee.bootstrap_ci(np.ones(5)) == (1.0, 1.0) and ee.bootstrap_ci(small, seed=1) == (lo, hi)  # seeded
    assert np.isnan(ee.bootstrap_ci(np.array([np.nan]))[0])


def test_ablations_compare_models_on_the_same_eval_cases(bench):
    model, cases, grids = bench
    other = smod.ShapesDenoiser(smod.ShapesConfig(dim=32, depth=1, heads=2, pixel_dim=8, num_steps=4)).eval()
    s = ee.EditSettings(steps=3, tau=0.8, cfg_scale=2.0, pseudo_inverse="lai", noise="mask", lambda1=0.7)
    values = {"pseudo_inverse": ["lai"], "lambda": [0.5, 0.9], "tau": [0.8], "cfg_scale": [1.0, 2.0],
              "injection": ["add"], "margin": [1.0]}
    res = ee.ablations({"shapes-oracle": model, "shapes": other}, (cases, grids), (cases, grids), s, values)
    assert set(res.chosen) == {"oracle", "learned"}
    assert res.chosen["oracle"].cfg_scale is None and res.chosen["learned"].cfg_scale in (1.0, 2.0)  # oracle: unguided
    assert "oracle" not in set(res.sweeps["cfg_scale"]["model"])  # no guidance sweep for it
    final = res.final()
    assert set(final["method"]) == {"dice", *ee.BASELINES} and set(final["model"]) == {"oracle", "learned"}
    for model_label in ("oracle", "learned"):  # same cases for every method and model
        part = res.per_case[res.per_case["model"] == model_label]
        assert all(set(g["id"]) == set(cases["id"]) for _, g in part.groupby("method"))
    row = final.iloc[0]
    assert row["edit_accuracy_lo"] <= row["edit_accuracy"] <= row["edit_accuracy_hi"]
    dice = res.per_case[(res.per_case["method"] == "dice") & (res.per_case["model"] == "learned")]
    sweep = res.per_case[(res.per_case["method"] == "dice_sweep") & (res.per_case["model"] == "learned")
                         & (res.per_case["lambda"] == res.chosen["learned"].lambda1)]
    np.testing.assert_array_equal(dice["edit_accuracy"].to_numpy(), sweep["edit_accuracy"].to_numpy())  # DICE = its sweep point
    reports = res.reports()
    assert set(reports) == {"oracle", "learned"} and all(list(r) == list(ee.HEADLINE) for r in reports.values())
    assert set(ee.sweep_plots(res.sweeps)) >= {"oracle_lambda", "learned_lambda", "learned_cfg_scale"}
    assert res.outputs["oracle"]["dice"].shape == (len(cases), 16, 16)


def test_reconstructions_per_model_and_their_reports(bench):
    model, cases, grids = bench
    per_case, mismatch, outputs = re_.reconstructions({"shapes-oracle": model, "shapes": model}, cases, grids, steps=3,
                                                      cfg_scale=2.0)
    assert list(per_case["model"].unique()) == ["oracle", "learned"] and set(mismatch) == set(outputs) == {"oracle", "learned"}
    assert re_.reconstruction_reports(per_case) == {"oracle": {"exact": 1.0}, "learned": {"exact": 1.0}}
    table = re_.summary_table(per_case, mismatch).set_index(["model", "method", "pseudo_inverse"])
    assert table.loc[("learned", "masked", "model"), "mismatch_rate"] == pytest.approx(mismatch["learned"]["masked/model"])
