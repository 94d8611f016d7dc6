"""VARIN on next-scale models: the central invariant (a property test that also shows it bites), edit grids,
Regeneration against a hand-written sampler, target-only editing, saved inversions and error messages."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dicelib
from dicelib.core import next_scale
from dicelib.core.next_scale import scale_guidance, scale_log_probs, scale_temperature
from dicelib.core.toy import RandomDenoiser, RandomNextScaleDenoiser
from dicelib.errors import DiceError, InversionFileError


class Recording:
    """Wraps a next-scale model; records the first `rows` rows of every prefix it is given (editing rows come first)."""

    def __init__(self, model, rows: int):
        self.model, self.rows, self.seen = model, rows, []
        self.num_classes, self.scales, self.null_cond = model.num_classes, model.scales, model.null_cond

    def scale_logits(self, prefix, cond):
        self.seen.append([m[: self.rows].clone() for m in prefix])
        return self.model.scale_logits(prefix, cond)


def greedy_maps(model, cond, cfg_scale, cfg_schedule, temperature):
    """Return the maps the model itself picks at every scale (argmax of its guided log-probs): where the
    `model` pseudo-inverse's argmax equals the source."""
    maps, num = [], len(model.scales)
    for s, (h, w) in enumerate(model.scales):
        group = (maps[:s], cond, cond.shape[0], scale_guidance(cfg_scale, cfg_schedule, s, num),
                 scale_temperature(temperature, s, num))
        maps.append(scale_log_probs(model, s, h * w, [group])[0].argmax(-1))
    return maps


def same_maps(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@st.composite
def cases(draw):
    num = draw(st.integers(1, 4))
    return dict(
        scales=[(draw(st.integers(1, 3)), draw(st.integers(1, 3))) for _ in range(num)],
        k=draw(st.integers(2, 12)),
        b=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**31 - 1)),
        pseudo_inverse=draw(st.sampled_from(["onehot", "lai", "model"])),
        store=draw(st.sampled_from(["float32", "bfloat16", "none"])),
        cfg_scale=draw(st.sampled_from([None, 1.0, 3.0])),
        cfg_schedule=draw(st.sampled_from(["constant", "linear"])),
        temperature=draw(st.sampled_from([1.0, 0.5, 2.0, (0.2, 1.2), (1.5, 0.5)])),
        scale=draw(st.sampled_from([0.5, 3.0, 30.0])),  # flat to very peaked predictions
        margin=draw(st.sampled_from([0.01, 1.0, 5.0])),
        injection=draw(st.sampled_from(["add", "variance_preserving"])),
    )


def run_case(c):
    """Return (source maps, inversion, reconstruction, prefixes the edit's rows were given) for case c."""
    model = RandomNextScaleDenoiser(c["k"], c["scales"], scale=c["scale"], seed=c["seed"] % 1000)
    gen = torch.Generator().manual_seed(c["seed"])
    cond = torch.randint(model.num_conds, (c["b"],), generator=gen)
    if c["pseudo_inverse"] == "model":
        maps = greedy_maps(model, cond, c["cfg_scale"], c["cfg_schedule"], c["temperature"])
    else:
        maps = [torch.randint(c["k"], (c["b"], h * w), generator=gen) for h, w in c["scales"]]
    inv = dicelib.invert(model, maps, cond, method="next_scale", pseudo_inverse=c["pseudo_inverse"], store=c["store"],
                         cfg_scale=c["cfg_scale"], cfg_schedule=c["cfg_schedule"], temperature=c["temperature"],
                         margin=c["margin"], generator=gen)
    recording = Recording(model, c["b"])
    out = dicelib.edit(recording, inv, cond, lambda1=1.0, lambda2=0.0, injection=c["injection"], generator=gen)
    return maps, inv, out, recording.seen


def check_invariant(c):
    """Assert the invariant for case c: every map back token for token, through the source's own prefixes."""
    maps, inv, out, seen = run_case(c)
    assert len(seen) == len(maps), f"editing made {len(seen)} model calls for {len(maps)} scales: {c}"
    assert same_maps(out, maps), f"reconstruction differs at {sum(int((a != b).sum()) for a, b in zip(out, maps))} tokens: {c}"
    # onehot alone cannot tell a wrong prefix (yhat + z = log onehot(r_k) whatever yhat is): every prefix the
    # edit's rows were given must be the source's own
    for s, prefix in enumerate(seen):
        assert same_maps(prefix, maps[:s]), f"editing's prefix at scale {s} left the source's: {c}"
    if c["pseudo_inverse"] == "model":
        assert inv.mismatch_rate == 0.0 and inv.reconstruction_error_rate == 0.0, c


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_source_condition_lambda1_1_lambda2_0_gives_every_scale_back(c):
    """The central invariant over pseudo-inverse x store x guidance (constant, linear) x temperature x sizes."""
    check_invariant(c)


def test_the_invariant_bites_when_editing_sees_a_wrong_prefix(monkeypatch):
    """Feed editing a perturbed prefix (its finest map shifted by one class): the property must fail in every
    case, and the maps themselves must come out wrong for LAI at a small margin."""
    cases_ = [dict(scales=[(1, 1), (2, 2), (3, 3)], k=6, b=2, seed=seed, pseudo_inverse=pi, store=store,
                   cfg_scale=cfg, cfg_schedule="linear", temperature=1.0, scale=3.0, margin=0.01, injection="add")
              for seed in range(4) for pi in ("onehot", "lai") for store in ("float32", "none") for cfg in (None, 3.0)]
    for c in cases_:  # honest prefixes: the property holds
        check_invariant(c)
    honest = next_scale._prefix
    monkeypatch.setattr(next_scale, "_prefix", lambda maps, k: [*honest(maps, k)[:-1], (maps[k - 1] + 1) % 6] if k else [])
    wrong_maps = 0
    for c in cases_:
        with pytest.raises(AssertionError):
            check_invariant(c)
        maps, _, out, _ = run_case(c)
        wrong_maps += c["pseudo_inverse"] == "lai" and not same_maps(out, maps)
    assert wrong_maps >= 12, f"only {wrong_maps} of 16 LAI cases came out wrong with a wrong prefix"


def test_model_pseudo_inverse_reports_mismatch_and_reconstruction_error_on_a_random_source():
    model = RandomNextScaleDenoiser(5, [(1, 1), (2, 2), (3, 3)], seed=1)
    gen = torch.Generator().manual_seed(0)
    maps = [torch.randint(5, (3, n), generator=gen) for n in (1, 4, 9)]
    cond = torch.tensor([0, 1, 2])
    for store in ("float32", "bfloat16", "none"):
        inv = dicelib.invert(model, maps, cond, method="next_scale", pseudo_inverse="model", store=store, cfg_scale=2.0)
        out = dicelib.reconstruct(model, inv)
        greedy = torch.cat([scale_log_probs(model, s, n, [(maps[:s], cond, 3, 2.0, 1.0)])[0].argmax(-1)
                            for s, n in enumerate((1, 4, 9))], 1)
        assert inv.mismatch_rate == (greedy != inv.x0).float().mean().item() > 0
        assert inv.reconstruction_error_rate == (torch.cat(out, 1) != inv.x0).float().mean().item() > 0


# --- edit grids ---------------------------------------------------------------------------------------------------


class Counting:
    """Wraps a next-scale model and counts its calls."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.num_classes, self.scales, self.null_cond = model.num_classes, model.scales, model.null_cond

    def scale_logits(self, prefix, cond):
        self.calls += 1
        return self.model.scale_logits(prefix, cond)


@pytest.mark.parametrize("pseudo_inverse, store", [("lai", "float32"), ("lai", "none"), ("onehot", "bfloat16"), ("model", "none")])
def test_grid_equals_lone_edits_token_for_token_with_one_model_call_per_scale(pseudo_inverse, store):
    model = RandomNextScaleDenoiser(7, [(1, 1), (2, 2), (3, 3), (4, 4)], seed=3)
    gen = torch.Generator().manual_seed(5)
    maps = [torch.randint(7, (2, n), generator=gen) for n in (1, 4, 9, 16)]
    src, tgt = torch.tensor([0, 1]), torch.tensor([2, 3])
    inv = dicelib.invert(model, maps, src, method="next_scale", pseudo_inverse=pseudo_inverse, store=store, cfg_scale=2.0,
                         cfg_schedule="linear", margin=0.5, generator=gen)
    grid = [dict(lambda1=1.0, lambda2=0.0, cond=src), dict(lambda1=0.7, start_scale=1, cond=tgt),
            dict(lambda1=0.5, lambda2=0.5, start_scale=2, cond=tgt, cfg_scale=4.0),
            dict(lambda1=0.9, lambda_schedule="linear", lambda1_end=0.2, cond=tgt, temperature=(1.5, 0.5)),
            dict(lambda1=0.0, lambda2=1.0, start_scale=3, cond=src, cfg_schedule="constant", injection="variance_preserving")]
    counting = Counting(model)
    outs = dicelib.edit_grid(counting, inv, grid, generators=[torch.Generator().manual_seed(j) for j in range(len(grid))])
    assert counting.calls == 4  # one call per scale for every setting (and the recomputed inversion rows)
    for j, spec in enumerate(grid):
        alone = dicelib.edit(model, inv, generator=torch.Generator().manual_seed(j), **spec)
        assert same_maps(outs[j], alone), f"setting {j} differs from its own edit"
        assert same_maps(alone[:spec.get("start_scale", 0)], maps[:spec.get("start_scale", 0)])
    if pseudo_inverse != "model":  # a random source is not the model's greedy choice
        assert same_maps(outs[0], maps)
    if pseudo_inverse == "lai":  # onehot latents (-70 off the source's class) outweigh any prediction at lambda1 = 0.7
        assert not same_maps(outs[1], maps)
    # max_batch splits the calls, not the results
    split = dicelib.edit_grid(model, inv, grid, generators=[torch.Generator().manual_seed(j) for j in range(len(grid))], max_batch=3)
    assert all(same_maps(a, b) for a, b in zip(outs, split))


def test_lambda_schedules_run_over_the_edited_scales():
    model = RandomNextScaleDenoiser(4, [(1, 1), (2, 2), (3, 3), (4, 4)])
    maps = [torch.zeros(1, n, dtype=torch.long) for n in (1, 4, 9, 16)]
    inv = dicelib.invert(model, maps, torch.tensor([0]), method="next_scale")
    runs = next_scale._resolve(inv, dict(lambda1=0.9, lambda1_end=0.3, lambda_schedule="linear", start_scale=1,
                                         cond=torch.tensor([1])), next_scale._UNSET, None)
    assert runs.start == 1 and runs.lambda1s == pytest.approx([0.9, 0.6, 0.3])
    assert runs.lambda2s == pytest.approx([0.1, 0.4, 0.7])


# --- baselines ----------------------------------------------------------------------------------------------------


def reference_regeneration(model, maps, cond, start, cfg, temperature, gen):
    """Return VARIN Alg. 4 written out by hand: copy scales < start, then r_k = argmax(guided log p + Gumbel)."""
    out = list(maps[:start])
    for s in range(start, len(model.scales)):
        logits = model.scale_logits(out, cond)
        logp = torch.log_softmax(logits / temperature, -1)
        if cfg is not None:
            u = torch.log_softmax(model.scale_logits(out, torch.full_like(cond, model.num_conds)) / temperature, -1)
            logp = torch.log_softmax(u + cfg * (logp - u), -1)
        logp = logp.clamp(min=-70.0)
        uniform = torch.rand(logp.shape, generator=gen, dtype=torch.float64).clamp(min=torch.finfo(torch.float64).tiny)
        out.append((logp + (-(-uniform.log()).log()).float()).argmax(-1))
    return out


@pytest.mark.parametrize("start, cfg, temperature", [(0, None, 1.0), (1, 3.0, 1.0), (2, None, 0.7), (3, 2.0, 1.3)])
def test_regeneration_keeps_the_first_maps_and_matches_a_hand_written_sampler(start, cfg, temperature):
    model = RandomNextScaleDenoiser(6, [(1, 1), (2, 2), (3, 3), (4, 4)], seed=2)
    gen = torch.Generator().manual_seed(9)
    maps = [torch.randint(6, (3, n), generator=gen) for n in (1, 4, 9, 16)]
    cond = torch.tensor([1, 2, 3])
    out = dicelib.regenerate_next_scale(model, maps, cond, start, cfg_scale=cfg, temperature=temperature,
                                        generator=torch.Generator().manual_seed(4))
    assert all(out[s] is not maps[s] and torch.equal(out[s], maps[s]) for s in range(start))  # copies of the source
    ref = reference_regeneration(model, maps, cond, start, cfg, temperature, torch.Generator().manual_seed(4))
    assert same_maps(out, ref)
    assert not same_maps(out, maps)
    # the same as editing with lambda1 = 0, lambda2 = 1 from any inversion, under one generator
    inv = dicelib.invert(model, maps, torch.tensor([0, 0, 0]), method="next_scale", pseudo_inverse="lai",
                         cfg_scale=cfg, temperature=temperature)
    edited = dicelib.edit(model, inv, cond, lambda1=0.0, lambda2=1.0, start_scale=start, generator=torch.Generator().manual_seed(4))
    assert same_maps(out, edited)


@pytest.mark.parametrize("pseudo_inverse", ["onehot", "lai"])
def test_target_only_edit_reconstructs_under_the_target_condition(pseudo_inverse):
    model = RandomNextScaleDenoiser(6, [(1, 1), (2, 2), (3, 3)], seed=4)
    gen = torch.Generator().manual_seed(1)
    maps = [torch.randint(6, (2, n), generator=gen) for n in (1, 4, 9)]
    tgt = torch.tensor([2, 3])
    out = dicelib.target_only_edit(model, maps, tgt, lambda1=1.0, lambda2=0.0, pseudo_inverse=pseudo_inverse,
                                   cfg_scale=3.0, store="none", generator=torch.Generator().manual_seed(0))
    assert same_maps(out, maps)
    # with noise it is the edit of an inversion under the target itself (Alg. 6), drawn from one generator
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    edited = dicelib.target_only_edit(model, maps, tgt, lambda1=0.6, start_scale=1, pseudo_inverse=pseudo_inverse, generator=g1)
    inv = dicelib.invert(model, maps, tgt, method="next_scale", pseudo_inverse=pseudo_inverse, generator=g2)
    assert same_maps(edited, dicelib.edit(model, inv, tgt, lambda1=0.6, start_scale=1, generator=g2))


def test_linear_cfg_schedule_ramps_from_plain_conditioning_to_one_plus_cfg():
    assert [scale_guidance(2.0, "linear", s, 5) for s in range(5)] == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert [scale_guidance(2.0, "constant", s, 5) for s in range(5)] == [2.0] * 5
    assert scale_guidance(None, "linear", 3, 5) is None and scale_guidance(2.0, "linear", 0, 1) == 3.0
    assert [scale_temperature((0.5, 1.5), s, 3) for s in range(3)] == [0.5, 1.0, 1.5]


# --- saved inversions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["float32", "bfloat16", "none"])
@pytest.mark.parametrize("pseudo_inverse", ["onehot", "lai"])
def test_saved_next_scale_inversion_loads_and_reconstructs_exactly(tmp_path, store, pseudo_inverse):
    model = RandomNextScaleDenoiser(9, [(1, 1), (2, 3), (4, 4)], seed=6)
    gen = torch.Generator().manual_seed(2)
    maps = [torch.randint(9, (2, n), generator=gen) for n in (1, 6, 16)]
    inv = dicelib.invert(model, maps, torch.tensor([0, 3]), method="next_scale", pseudo_inverse=pseudo_inverse,
                         store=store, cfg_scale=2.5, cfg_schedule="linear", temperature=(0.8, 1.2), margin=0.2, generator=gen)
    loaded = dicelib.Inversion.load(inv.save(tmp_path / "inv.pt"))
    assert loaded.method == "next_scale" and loaded.cfg_schedule == "linear" and loaded.scales.tolist() == [[1, 1], [2, 3], [4, 4]]
    assert loaded.lai_seed == inv.lai_seed and loaded.temperature == (0.8, 1.2)
    assert same_maps(loaded.x0_maps, maps)
    assert same_maps(dicelib.reconstruct(model, loaded), maps)
    edit = dict(lambda1=0.6, start_scale=1, generator=torch.Generator().manual_seed(3))
    assert same_maps(dicelib.edit(model, loaded, torch.tensor([1, 1]), **edit),
                     dicelib.edit(model, inv, torch.tensor([1, 1]), **{**edit, "generator": torch.Generator().manual_seed(3)}))
    data = inv.to_dict()
    data["scales"] = torch.tensor([[1, 1], [2, 3], [4, 3]])
    with pytest.raises(InversionFileError, match="scales"):
        dicelib.Inversion.from_dict(data)
    data = {**inv.to_dict(), "cfg_schedule": "cosine"}
    with pytest.raises(InversionFileError, match="cfg_schedule"):
        dicelib.Inversion.from_dict(data)


# --- errors -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    model = RandomNextScaleDenoiser(5, [(1, 1), (2, 2), (3, 3)])
    maps = [torch.zeros(2, n, dtype=torch.long) for n in (1, 4, 9)]
    return model, maps, torch.tensor([0, 1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=10), r"steps does not apply to method 'next_scale'.*got 10"),
    (dict(tau=0.5), r"tau does not apply.*got 0.5"),
    (dict(cfg_schedule="cosine"), r"unknown cfg_schedule 'cosine'; expected one of 'constant', 'linear'"),
    (dict(noise="mask"), r"unknown option\(s\) \['noise'\] for method 'next_scale'; accepted: \['margin'\]"),
    (dict(pseudo_inverse="exact"), r"unknown pseudo_inverse 'exact'"),
    (dict(margin=0.0), r"LAI margin must be"),
])
def test_invert_rejects_bad_settings(toy, kwargs, match):
    model, maps, cond = toy
    with pytest.raises(DiceError, match=match):
        dicelib.invert(model, maps, cond, method="next_scale", **kwargs)


def test_bad_maps_are_named(toy):
    model, maps, cond = toy
    bad = [
        (maps[:2], r"x0 must be a list of the model's S = 3 token maps .* h_k \* w_k = \[1, 4, 9\].*got 2 maps"),
        (maps[0], r"x0 must be a list of the model's S = 3 token maps.*got Tensor"),
        ([maps[0], torch.zeros(2, 5, dtype=torch.long), maps[2]], r"x0\[1\] must have shape \[B, h \* w\] = \[2, 4\].*got \[2, 5\]"),
        ([maps[0], maps[1], torch.zeros(3, 9, dtype=torch.long)], r"x0\[2\] must have shape .*every map has the same B.*got \[3, 9\]"),
        ([maps[0], maps[1], torch.full((2, 9), 5)], r"x0\[2\] holds values in \[5, 5\]; expected token ids 0..4"),
        ([maps[0], maps[1].float(), maps[2]], r"x0\[1\] must be a LongTensor \[B, 4\] of token ids, got dtype torch.float32"),
    ]
    for x0, match in bad:
        with pytest.raises(DiceError, match=match):
            dicelib.invert(model, x0, cond, method="next_scale")
    with pytest.raises(DiceError, match=r"needs cond with one row per batch row \(2\)"):
        dicelib.invert(model, maps, None, method="next_scale")
    with pytest.raises(DiceError, match=r"cond has 3 rows but x0 has 2"):
        dicelib.invert(model, maps, torch.tensor([0, 1, 2]), method="next_scale")
    with pytest.raises(DiceError, match=r"x0_maps\[1\] must have shape"):
        dicelib.regenerate_next_scale(model, [maps[0], maps[2], maps[1]], cond, 1)


def test_start_scale_and_schedules_out_of_range_are_named(toy):
    model, maps, cond = toy
    inv = dicelib.invert(model, maps, cond, method="next_scale")
    for value in (3, -1, 1.5, "1"):
        with pytest.raises(DiceError, match=rf"start_scale must be an int in 0..2 .*got {value!r}"):
            dicelib.edit(model, inv, cond, start_scale=value)
        with pytest.raises(DiceError, match=rf"start_scale must be an int in 0..2 .*got {value!r}"):
            dicelib.regenerate_next_scale(model, maps, cond, value)
    with pytest.raises(DiceError, match=r"settings\[1\]: start_scale must be an int in 0..2"):
        dicelib.edit_grid(model, inv, [dict(lambda1=0.5), dict(start_scale=7)], conds=[cond, cond])
    with pytest.raises(DiceError, match=r"lambda_schedule 'mi' .* use 'uniform', 'linear' or 'exponential'"):
        dicelib.edit(model, inv, cond, lambda_schedule="mi")
    with pytest.raises(DiceError, match=r"unknown edit setting\(s\) \['steps'\] for a next_scale inversion"):
        dicelib.edit_grid(model, inv, [dict(steps=3)], conds=[cond])
    with pytest.raises(DiceError, match=r"needs cond with one row per batch row \(2\)"):
        dicelib.edit(model, inv)
    guided = dicelib.invert(model, maps, cond, method="next_scale", cfg_scale=2.0)
    with pytest.raises(DiceError, match=r"max_batch must be None or an int >= 2 .*unconditional twin.*got 1"):
        dicelib.edit_grid(model, guided, [{}], conds=[cond], max_batch=1)


def test_the_wrong_kind_of_model_or_inversion_is_named(toy):
    model, maps, cond = toy
    masked_model = RandomDenoiser(5, 14)
    with pytest.raises(DiceError, match=r"RandomDenoiser is not a NextScaleDenoiser.*missing scales, scale_logits.*"
                                        r"it is a DiscreteDenoiser: use method 'masked' or 'multinomial'"):
        dicelib.invert(masked_model, maps, cond, method="next_scale")
    with pytest.raises(DiceError, match=r"RandomNextScaleDenoiser is a NextScaleDenoiser .* method='next_scale'"):
        dicelib.invert(model, torch.zeros(2, 14, dtype=torch.long), cond)
    inv = dicelib.invert(model, maps, cond, method="next_scale")
    with pytest.raises(DiceError, match=r"RandomDenoiser is not a NextScaleDenoiser"):
        dicelib.edit(masked_model, inv, cond)
    with pytest.raises(DiceError, match=r"scales \[\[1, 1\], \[2, 2\], \[3, 3\]\] differ from this model's \[\(1, 1\), \(2, 2\)\]"):
        dicelib.edit(RandomNextScaleDenoiser(5, [(1, 1), (2, 2)]), inv, cond)
    with pytest.raises(DiceError, match=r"cfg_schedule applies to method 'next_scale' only.*got 'linear'"):
        dicelib.invert(masked_model, torch.zeros(2, 14, dtype=torch.long), cond, steps=2, cfg_schedule="linear")
    masked_inv = dicelib.invert(masked_model, torch.zeros(2, 14, dtype=torch.long), cond, steps=2)
    assert torch.equal(dicelib.edit(masked_model, masked_inv, cond, start_scale=0), dicelib.edit(masked_model, masked_inv, cond))
    with pytest.raises(DiceError, match=r"start_scale applies to next_scale inversions only; this inversion's method is 'masked'"):
        dicelib.edit(masked_model, masked_inv, cond, start_scale=1)
    with pytest.raises(DiceError, match=r"RandomNextScaleDenoiser is a NextScaleDenoiser"):
        dicelib.edit(model, masked_inv, cond)


def test_edit_settings_carry_the_next_scale_options():
    s = dicelib.EditSettings(method="next_scale", pseudo_inverse="lai", cfg_schedule="linear", start_scale=2, lambda1=0.8)
    assert "steps" not in s.invert_kwargs() and "tau" not in s.invert_kwargs() and s.invert_kwargs()["cfg_schedule"] == "linear"
    assert s.edit_kwargs()["start_scale"] == 2
    masked = dicelib.EditSettings()
    assert "cfg_schedule" not in masked.invert_kwargs() and "start_scale" not in masked.edit_kwargs()
    model = RandomNextScaleDenoiser(5, [(1, 1), (2, 2), (3, 3)])
    maps = [torch.randint(5, (1, n), generator=torch.Generator().manual_seed(0)) for n in (1, 4, 9)]
    inv = dicelib.invert(model, maps, torch.tensor([0]), **s.invert_kwargs())
    assert inv.cfg_schedule == "linear" and inv.pseudo_inverse == "lai"
    by_settings = dicelib.edit_grid(model, inv, [s], conds=[torch.tensor([1])], generators=[torch.Generator().manual_seed(1)])[0]
    by_kwargs = dicelib.edit(model, inv, torch.tensor([1]), generator=torch.Generator().manual_seed(1), **s.edit_kwargs())
    assert same_maps(by_settings, by_kwargs) and same_maps(by_settings[:2], maps[:2])
