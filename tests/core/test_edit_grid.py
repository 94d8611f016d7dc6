"""Edit grids: many edit settings from one inversion in one model call per step, token for token the
one-at-a-time edits; the same tokens (latents within float tolerance) as before grids existed (fixture);
store="none" shares its work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dicelib
from dicelib.core import api, conditions
from dicelib.core.guidance import predict_log_probs
from dicelib.core.toy import RandomDenoiser
from dicelib.errors import DiceError
from tests.numerics import assert_matches_recorded

FIXTURE = Path(__file__).parents[1] / "fixtures" / "edit_grid_expected.pt"
B, K, D = 2, 9, 6


class Counting:
    """Wraps a denoiser and records the rows of every call."""

    def __init__(self, model):
        self.model, self.rows = model, []
        self.num_classes, self.mask_id, self.null_cond = model.num_classes, model.mask_id, model.null_cond
        self.num_positions = model.num_positions

    def logits(self, x, t, cond):
        self.rows.append(x.shape[0])
        return self.model.logits(x, t, cond)


class RowWise(Counting):
    """Counting, with logits computed one row at a time: a row's logits never depend on the rest of the
    batch. Matrix products can round differently at other batch sizes (by an ulp or so, which rarely flips
    an argmax); this model makes grid == one-at-a-time a property of dicelib's code alone."""

    def logits(self, x, t, cond):
        self.rows.append(x.shape[0])
        return torch.cat([self.model.logits(x[r:r + 1], t[r:r + 1], cond[r:r + 1]) for r in range(x.shape[0])])


def reference_inversions():
    """Yield (key, model, inversion) for both methods, every pseudo-inverse and store (guidance and a
    temperature schedule on), made with the public API only."""
    model = RandomDenoiser(K, D, seed=5)
    x0 = torch.randint(K, (B, D), generator=torch.Generator().manual_seed(21))
    for method in ("masked", "multinomial"):
        opts = dict(steps=5, noise="mask") if method == "masked" else dict(schedule=dicelib.MultinomialSchedule.vq_linear(6))
        for pi in ("onehot", "lai", "model"):
            for store in ("float32", "bfloat16", "none"):
                yield f"{method}/{pi}/{store}", model, dicelib.invert(
                    model, x0, torch.tensor([0, 1]), method=method, tau=0.8, pseudo_inverse=pi, cfg_scale=3.0,
                    temperature=(0.5, 1.5), store=store, generator=torch.Generator().manual_seed(1), **opts)


def reference_runs() -> dict[str, torch.Tensor]:
    """Return named tensors from `reference_inversions` and one `edit` per `grid_settings` entry. The
    fixture holds this function's output on the code before edit grids (commit 40d312c)."""
    out = {}
    for key, model, inv in reference_inversions():
        if inv.latents is not None:
            out[f"{key}/latents"] = inv.latents
        for name, kwargs in grid_settings().items():
            out[f"{key}/{name}"] = dicelib.edit(model, inv, generator=torch.Generator().manual_seed(2), **kwargs)
    return out


def grid_settings() -> dict[str, dict]:
    """Return named edit settings that differ in every grid option (the reference runs' and the grid tests')."""
    target, cond = torch.tensor([2, 3]), torch.tensor([0, 1])  # cond: the inversion's
    return {
        "plain": dict(cond=target, lambda1=0.7),
        "noise": dict(cond=target, lambda1=0.4, lambda2=0.9, injection="max"),
        "vp": dict(cond=target, lambda1=0.6, lambda2=0.5, injection="variance_preserving"),
        "linear": dict(cond=target, lambda1=0.3, lambda_schedule="linear", lambda1_end=0.9),
        "mi": dict(cond=target, lambda1=0.2, lambda_schedule="mi"),
        "cfg": dict(cond=target, lambda1=0.7, cfg_scale=6.0),
        "off": dict(cond=target, lambda1=0.7, cfg_scale=1.0, temperature=0.8),
        "temp": dict(cond=target, lambda1=0.5, temperature=(1.2, 0.4)),
        "reconstruct": dict(cond=cond, lambda1=1.0, lambda2=0.0),
        "other": dict(cond=torch.tensor([1, 0]), lambda1=0.8, lambda2=0.1),
    }


def test_edit_and_grid_match_the_recording_from_before():
    expected = torch.load(FIXTURE, weights_only=True)
    got = reference_runs()
    assert got.keys() == expected.keys()
    for name, want in expected.items():  # tokens exactly; latents within a few ulps (tests/numerics.py says why)
        assert_matches_recorded(got[name], want, name)
    named = grid_settings()
    for key, model, inv in reference_inversions():  # all settings as one grid, whole and split
        for max_batch in (None, 5):
            outs = dicelib.edit_grid(model, inv, list(named.values()), max_batch=max_batch,
                                     generators=[torch.Generator().manual_seed(2) for _ in named])
            for name, x in zip(named, outs):
                assert torch.equal(x, expected[f"{key}/{name}"]), (key, name, max_batch)


@st.composite
def grids(draw):
    k, d, b = draw(st.integers(2, 30)), draw(st.integers(1, 8)), draw(st.integers(1, 3))
    setting = st.fixed_dictionaries({
        "lambda1": st.sampled_from([0.0, 0.3, 0.7, 1.0]),
        "lambda2": st.sampled_from([None, 0.0, 0.2, 1.0]),
        "injection": st.sampled_from(["add", "max"]),
        "lambda_schedule": st.sampled_from(["uniform", "linear", "mi"]),
        "lambda1_end": st.sampled_from([1.0, 0.5]),
        "cfg_scale": st.sampled_from([None, 1.0, 4.0]),
        "temperature": st.sampled_from([None, 0.7, (1.5, 0.5)]),
        "cond": st.integers(0, 3),  # a target condition id, or the inversion's (3)
    })
    return dict(
        k=k, d=d, b=b, seed=draw(st.integers(0, 2**31 - 1)),
        method=draw(st.sampled_from(["masked", "multinomial"])),
        steps=draw(st.integers(1, 5)),
        tau=draw(st.sampled_from([1.0, 0.6])),
        pseudo_inverse=draw(st.sampled_from(["onehot", "lai", "model"])),
        store=draw(st.sampled_from(["float32", "bfloat16", "none"])),
        cfg_scale=draw(st.sampled_from([None, 3.0])),
        temperature=draw(st.sampled_from([1.0, (0.3, 1.3)])),
        settings=draw(st.lists(setting, min_size=1, max_size=5)),
        max_batch=draw(st.sampled_from([None, None, 2, 3, 7])),
    )


@given(grids())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_grid_equals_one_edit_per_setting_on_random_models(c):
    model = RandomDenoiser(c["k"], c["d"], seed=c["seed"] % 1000)
    gen = torch.Generator().manual_seed(c["seed"])
    x0 = torch.randint(c["k"], (c["b"], c["d"]), generator=gen)
    cond = torch.randint(3, (c["b"],), generator=gen)
    opts = (dict(steps=c["steps"]) if c["method"] == "masked"
            else dict(schedule=dicelib.MultinomialSchedule.vq_linear(c["steps"] + 1)))
    inv = dicelib.invert(model, x0, cond, method=c["method"], tau=c["tau"], pseudo_inverse=c["pseudo_inverse"],
                         cfg_scale=c["cfg_scale"], temperature=c["temperature"], store=c["store"], generator=gen, **opts)
    specs = [s | {"cond": cond if s["cond"] == 3 else torch.full((c["b"],), s["cond"])} for s in c["settings"]]
    seeds = [c["seed"] + j for j in range(len(specs))]
    single = RowWise(model)
    expected = [dicelib.edit(single, inv, generator=torch.Generator().manual_seed(s), **spec) for s, spec in zip(seeds, specs)]
    counting = RowWise(model)
    got = dicelib.edit_grid(counting, inv, specs, generators=[torch.Generator().manual_seed(s) for s in seeds],
                            max_batch=c["max_batch"])
    for j, (a, b) in enumerate(zip(got, expected)):
        assert torch.equal(a, b), f"setting {j}"
    n = inv.num_edit_steps
    extra = 1 if c["store"] == "none" and c["pseudo_inverse"] == "model" else 0  # the target D(x0, 0, c), once
    assert len(single.rows) == len(specs) * (n + extra)  # before grids: one call per setting and step
    if c["max_batch"] is None:
        assert len(counting.rows) == n + extra  # one call per step for the whole grid
    else:
        assert max(counting.rows) <= c["max_batch"]
    assert sum(counting.rows) <= sum(single.rows)  # shared rows are computed once


@pytest.mark.parametrize("store", ["float32", "none"])
def test_one_call_per_step_for_16_settings_and_shared_work(store, monkeypatch):
    model = RandomDenoiser(K, D, seed=1)
    x0 = torch.randint(K, (B, D), generator=torch.Generator().manual_seed(0))
    cond, target = torch.tensor([0, 1]), torch.tensor([2, 2])
    inv = dicelib.invert(model, x0, cond, steps=6, pseudo_inverse="lai", cfg_scale=3.0, store=store,
                         generator=torch.Generator().manual_seed(1))
    lambdas = [0.3 + 0.04 * j for j in range(16)]
    latents = []
    monkeypatch.setattr(api, "_latent", lambda *args: latents.append(1) or real_latent(*args))
    counting = Counting(model)
    outs = dicelib.edit_grid(counting, inv, [{"lambda1": v} for v in lambdas], conds=[target] * 16)
    # one call per step; the first step's rows are one setting's (all 16 start from the same state under one
    # condition), later ones 16 settings' (and the inversion's with store="none"), each with its guided twin
    inv_rows = 2 * B if store == "none" else 0
    assert counting.rows == [2 * B + inv_rows] + [16 * 2 * B + inv_rows] * 5
    assert len(latents) == (6 if store == "none" else 0)  # the inversion's latent: once per step for all settings
    before = Counting(model)
    singles = [dicelib.edit(before, inv, target, lambda1=v) for v in lambdas]
    assert len(before.rows) == 16 * 6  # one call per setting and step
    assert all(torch.equal(a, b) for a, b in zip(outs, singles))


real_latent = api._latent


def test_store_none_reconstruction_computes_its_rows_once():
    """The reconstruction's rows are the inversion's: store="none" needs no second set of rows for it."""
    model = RandomDenoiser(K, D, seed=2)
    x0 = torch.randint(K, (B, D), generator=torch.Generator().manual_seed(0))
    for method, opts in (("masked", dict(steps=4)), ("multinomial", dict(schedule=dicelib.MultinomialSchedule.vq_linear(4)))):
        inv = dicelib.invert(model, x0, torch.tensor([0, 1]), method=method, pseudo_inverse="lai", cfg_scale=2.0, store="none",
                             generator=torch.Generator().manual_seed(1), **opts)
        counting = Counting(model)
        assert torch.equal(dicelib.reconstruct(counting, inv), x0)
        assert counting.rows == [2 * B] * inv.num_edit_steps, (method, counting.rows)


def test_settings_may_be_edit_settings_and_conds_a_list():
    model = RandomDenoiser(K, D, seed=3)
    x0 = torch.randint(K, (B, D), generator=torch.Generator().manual_seed(0))
    inv = dicelib.invert(model, x0, torch.tensor([0, 1]), steps=4, pseudo_inverse="model", cfg_scale=2.0,
                         generator=torch.Generator().manual_seed(1))
    base = dicelib.EditSettings(steps=4, pseudo_inverse="model", cfg_scale=5.0, lambda1=0.6)  # guidance: the inversion's
    specs = [base, dataclasses.replace(base, injection="max", lambda2=0.8), dataclasses.replace(base, lambda_schedule="linear")]
    conds = [torch.tensor([2, 3]), torch.tensor([3, 3]), torch.tensor([2, 2])]
    got = dicelib.edit_grid(model, inv, specs, conds=conds)
    for x, s, c in zip(got, specs, conds):
        assert torch.equal(x, dicelib.edit(model, inv, c, **s.edit_kwargs()))


def test_max_batch_splits_rows_across_calls():
    model = RandomDenoiser(K, D, seed=4)
    x0 = torch.randint(K, (3, D), generator=torch.Generator().manual_seed(0))
    inv = dicelib.invert(model, x0, torch.tensor([0, 1, 2]), steps=3, cfg_scale=2.0, generator=torch.Generator().manual_seed(1))
    specs = [{"lambda1": v, "cond": torch.tensor([3, 3, 3])} for v in (0.2, 0.5, 0.8)]
    whole = dicelib.edit_grid(model, inv, specs)
    for max_batch in (2, 3, 5, 100):
        counting = Counting(model)
        assert all(torch.equal(a, b) for a, b in zip(dicelib.edit_grid(counting, inv, specs, max_batch=max_batch), whole))
        per_call = 2 * (max_batch // 2)  # guided rows come with their twins
        rows = [2 * 3, 3 * 2 * 3, 3 * 2 * 3]  # model rows per step: one setting at the first step, then three
        assert counting.rows == [r for total in rows for r in [per_call] * (total // per_call) + [total % per_call] if r]


def test_predict_log_probs_with_per_group_guidance_equals_separate_calls():
    model = RandomDenoiser(K, D, seed=6)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randint(K + 1, (r, D), generator=gen) for r in (1, 2, 3, 2)]
    guidance = [(None, 1.0), (3.0, 0.5), (3.0, 0.5), (1.0, 2.0)]
    groups = [(x, torch.full((x.shape[0],), 0.4), torch.randint(4, (x.shape[0],), generator=gen), cfg, temp)
              for x, (cfg, temp) in zip(xs, guidance)]
    counting = RowWise(model)
    together = predict_log_probs(counting, groups)
    assert counting.rows == [8 + 5]  # every group's rows, then the twins of the two guided groups
    for g, logp in zip(groups, together):
        assert torch.equal(logp, predict_log_probs(counting, [g[:3]], g[3], g[4])[0])


def test_conditions_take_rows_and_compare():
    cond = {"ids": torch.arange(4), "text": ["a", "b", "c", "d"]}
    assert conditions.same(conditions.take(cond, 1, 3), {"ids": torch.tensor([1, 2]), "text": ["b", "c"]})
    assert conditions.take(None, 0, 2) is None
    assert not conditions.same(torch.tensor([1, 2]), torch.tensor([1, 3]))
    assert conditions.same(["a"], ("a",))  # lists and tuples batch alike
    assert not conditions.same(torch.tensor([1]), [1])


SHARED = torch.Generator()


@pytest.mark.parametrize("args, message", [
    (dict(settings=[]), "settings must be a non-empty list"),
    (dict(settings={"lambda1": 0.5}), "settings must be a non-empty list"),
    (dict(settings=[0.5]), "must be an EditSettings or a dict of edit arguments, got float"),
    (dict(settings=[{"lambda": 0.5}]), "unknown edit setting(s) ['lambda']"),
    (dict(settings=[{"lambda1": 0.5}, {"lambda1": float("nan")}]), "settings[1]: lambda1 must be a finite number, got nan"),
    (dict(settings=[{"lambda1": 0.5}, {"cfg_scale": "x"}]), "settings[1]: cfg_scale must be None or a finite number, got 'x'"),
    (dict(settings=[{"cond": torch.tensor([1])}]), "1 rows but x0 has 2"),
    (dict(settings=[{"cond": torch.tensor([1, 1])}], conds=[torch.tensor([1, 1])]), "cond is given twice"),
    (dict(settings=[{}, {}], conds=[torch.tensor([1, 1])]), "conds must be None or a list of one entry per setting (2), got 1 entries"),
    (dict(settings=[{}, {}], generators=[SHARED, SHARED]), "generators[1] is the same generator as generators[0]"),
    (dict(settings=[{}], generators=["seed"]), "generator must be a torch.Generator, got str"),
    (dict(settings=[{}], max_batch=1), "max_batch must be None or an int >= 2"),
    (dict(settings=[{"cfg_scale": 1.0}], max_batch=0), "max_batch must be None or an int >= 1, got 0"),
    (dict(settings=[{}], max_batch=2.5), "max_batch must be None or an int >= 2"),
])
def test_edit_grid_rejects_bad_settings(args, message):
    model = RandomDenoiser(K, D)
    x0 = torch.randint(K, (B, D), generator=torch.Generator().manual_seed(0))
    inv = dicelib.invert(model, x0, torch.tensor([0, 1]), steps=2, cfg_scale=2.0, generator=torch.Generator().manual_seed(1))
    with pytest.raises(DiceError) as err:
        dicelib.edit_grid(model, inv, **args)
    assert message in str(err.value)


def test_row_costs_fit_max_batch_exactly():
    groups = [(torch.zeros(3, 1), None, None, None, 1.0), (torch.zeros(2, 1), None, None, 2.0, 1.0)]
    calls = api._split(groups, 3)
    assert calls == [[(0, 0, 3)], [(1, 0, 1)], [(1, 1, 2)]]
    assert all(sum((hi - lo) * (1 if groups[j][3] is None else 2) for j, lo, hi in call) <= 3 for call in calls)
    assert api._split(groups, 100) == [[(0, 0, 3), (1, 0, 2)]]  # one call holding both groups
