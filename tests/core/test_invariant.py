"""The central invariant: inversion then editing with the source condition, lambda1 = 1, lambda2 = 0
reproduces the input token for token, for models nobody trained."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dicelib
from dicelib.core.guidance import predict_log_probs
from dicelib.core.toy import RandomDenoiser


class Recording:
    """Wraps a denoiser and records the first `rows` rows of every input: the edit's own states."""

    def __init__(self, model, rows: int):
        self.model, self.rows, self.seen = model, rows, []
        self.num_classes, self.mask_id, self.null_cond = model.num_classes, model.mask_id, model.null_cond

    def logits(self, x, t, cond):
        self.seen.append(x[: self.rows].clone())  # editing rows come first in every batched call
        return self.model.logits(x, t, cond)


def inversion_states(inv) -> list[torch.Tensor]:
    """Return the inversion's trajectory states x_n, ..., x_1 [B, D], read off its fields (editing order)."""
    if inv.method == "masked":
        return [torch.where(inv.u < inv.levels[i], inv.noise, inv.x0) for i in range(len(inv.levels) - 1, -1, -1)]
    return [inv.trajectory[i] for i in range(inv.trajectory.shape[0] - 1, -1, -1)]


def agreeing_x0(model, x0, cond):
    """Return x0 moved towards the model's own clean prediction, so that `model` latents mostly agree."""
    for _ in range(3):
        x0 = model.logits(x0, torch.zeros(x0.shape[0]), cond).argmax(-1)
    return x0


@st.composite
def cases(draw):
    k = draw(st.integers(2, 40))
    d = draw(st.integers(1, 12))
    b = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    method = draw(st.sampled_from(["masked", "multinomial"]))
    return dict(
        k=k, d=d, b=b, seed=seed, method=method,
        steps=draw(st.integers(1, 8)),
        tau=draw(st.sampled_from([1.0, 0.9, 0.5, 0.13])),
        pseudo_inverse=draw(st.sampled_from(["onehot", "lai", "model"])),
        agree=draw(st.booleans()),  # `model`: x0 near the model's own prediction (few mismatches) or random
        injection=draw(st.sampled_from(["add", "variance_preserving"])),
        store=draw(st.sampled_from(["float32", "bfloat16", "none"])),
        cfg_scale=draw(st.sampled_from([None, 1.0, 3.0, 7.5])),
        temperature=draw(st.sampled_from([1.0, 0.5, 2.0, (0.2, 1.2), (1.5, 0.5)])),
        scale=draw(st.sampled_from([0.5, 3.0, 30.0])),  # flat to very peaked predictions
        margin=draw(st.sampled_from([0.01, 1.0, 5.0])),
        mask_schedule=draw(st.sampled_from(["linear", "cosine", "root", "arccos", "cubic"])),
        noise=draw(st.sampled_from(["uniform", "mask"])),
    )


def run_case(c, store):
    """Return (x0, inversion, edit output, states the edit saw, the inversion's states) for case c under `store`."""
    model = RandomDenoiser(c["k"], c["d"], scale=c["scale"], seed=c["seed"] % 1000)
    gen = torch.Generator().manual_seed(c["seed"])
    x0 = torch.randint(c["k"], (c["b"], c["d"]), generator=gen)
    cond = torch.randint(model.num_conds, (c["b"],), generator=gen)
    if c["pseudo_inverse"] == "model" and c["agree"]:
        x0 = agreeing_x0(model, x0, cond)
    if c["method"] == "masked":
        opts = dict(steps=c["steps"], mask_schedule=c["mask_schedule"], noise=c["noise"])
    else:
        opts = dict(schedule=dicelib.MultinomialSchedule.vq_linear(c["steps"] + 1))
    inv = dicelib.invert(model, x0, cond, method=c["method"], tau=c["tau"], pseudo_inverse=c["pseudo_inverse"],
                         cfg_scale=c["cfg_scale"], temperature=c["temperature"], store=store, generator=gen,
                         margin=c["margin"], **opts)
    recording = Recording(model, c["b"])
    out = dicelib.edit(recording, inv, cond, lambda1=1.0, lambda2=0.0, injection=c["injection"], generator=gen)
    seen = recording.seen[1:] if c["pseudo_inverse"] == "model" and store == "none" else recording.seen  # [0]: D(x0, 0, c)
    return x0, inv, out, seen, inversion_states(inv)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_exact_reconstruction_property(c):
    """onehot, lai: the input, through the inversion's own states. model: what the float32 store gives,
    under every store mode (exact where the model agrees with x0), with the error rate invert reported."""
    x0, inv, out, seen, states = run_case(c, c["store"])
    assert len(seen) == len(states), f"editing ran {len(seen)} model calls for {len(states)} steps: {c}"
    if c["pseudo_inverse"] == "model":
        _, _, reference, reference_seen, _ = run_case(c, "float32")
        assert torch.equal(out, reference), f"store {c['store']} differs from float32 at {(out != reference).sum().item()} positions: {c}"
        assert all(torch.equal(a, b) for a, b in zip(seen, reference_seen)), f"store {c['store']} left float32's states: {c}"
        assert inv.reconstruction_error_rate == (out != x0).float().mean().item(), c
        if inv.mismatch_rate > 0:
            return
    assert torch.equal(out, x0), f"reconstruction differs at {(out != x0).sum().item()} positions for {c}"
    # the output alone cannot tell a wrong trajectory for onehot (yhat + z = log onehot(x0) at every
    # step): every intermediate state the model saw while editing must be the inversion's own state
    for step, (x, expected) in enumerate(zip(seen, states)):
        assert torch.equal(x, expected), f"editing state {step} left the inversion's trajectory for {c}"


@pytest.mark.parametrize("method, seed", [("masked", 5), ("multinomial", 0), ("multinomial", 1)])
def test_bfloat16_store_reconstructs_like_float32_for_the_model_pseudo_inverse(method, seed):
    """The issue's case at K = 1024: rounding the latents to bfloat16 must not move any reconstructed token."""
    model = RandomDenoiser(1024, 32, seed=seed)
    cond = torch.arange(4)
    x0 = agreeing_x0(model, torch.randint(1024, (4, 32), generator=torch.Generator().manual_seed(seed)), cond)
    opts = dict(steps=8) if method == "masked" else dict(schedule=dicelib.MultinomialSchedule.vq_linear(8))
    out = {store: dicelib.reconstruct(model, dicelib.invert(model, x0, cond, method=method, pseudo_inverse="model",
                                                            store=store, cfg_scale=3.0, generator=torch.Generator().manual_seed(1), **opts))
           for store in ("float32", "bfloat16", "none")}
    assert torch.equal(out["bfloat16"], out["float32"]) and torch.equal(out["none"], out["float32"])


@settings(deadline=None, max_examples=60)
@given(st.integers(0, 10_000), st.sampled_from(["masked", "multinomial"]), st.sampled_from(["float32", "bfloat16", "none"]),
       st.sampled_from([None, 3.0]), st.booleans())
def test_model_pseudo_inverse_reports_its_mismatch_and_reconstruction_error_rates(seed, method, store, cfg, agree):
    """mismatch_rate: argmax D(x0, 0, c) != x0. reconstruction_error_rate: what reconstruction shows, higher or
    lower, because a mismatch changes the states of later steps and with them the predictions there."""
    model = RandomDenoiser(6, 9, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(6, (2, 9), generator=gen)
    cond = torch.tensor([0, 1])
    if agree:
        x0 = agreeing_x0(model, x0, cond)
    opts = dict(steps=5) if method == "masked" else dict(schedule=dicelib.MultinomialSchedule.vq_linear(5))
    inv = dicelib.invert(model, x0, cond, method=method, pseudo_inverse="model", store=store, cfg_scale=cfg,
                         generator=gen, **opts)
    clean = predict_log_probs(model, [(x0, torch.zeros(2), cond)], cfg, 1.0)[0].argmax(-1)
    assert inv.mismatch_rate == (clean != x0).float().mean().item()
    assert inv.reconstruction_error_rate == (dicelib.reconstruct(model, inv) != x0).float().mean().item()


def test_the_two_rates_differ_on_a_random_model():
    """The reason for two numbers: on a random model they part in both directions."""
    differ = []
    for seed in range(20):
        model = RandomDenoiser(6, 9, seed=seed)
        x0 = agreeing_x0(model, torch.randint(6, (2, 9), generator=torch.Generator().manual_seed(seed)), torch.tensor([0, 1]))
        inv = dicelib.invert(model, x0, torch.tensor([0, 1]), steps=5, pseudo_inverse="model", cfg_scale=3.0)
        differ.append(inv.reconstruction_error_rate - inv.mismatch_rate)
    assert min(differ) < 0 < max(differ), differ


class CopyDenoiser:
    """Predicts its own unmasked input strongly: argmax D(x0, 0, c) = x0, so `model` must be exact."""

    def __init__(self, k: int):
        self.num_classes, self.mask_id, self.null_cond = k, k, [""]

    def logits(self, x, t, cond):
        base = torch.zeros(*x.shape, self.num_classes)
        known = x < self.num_classes
        base[known] = 8.0 * torch.nn.functional.one_hot(x[known], self.num_classes).float()
        return base + 0.1 * torch.arange(self.num_classes).float()  # conditions ignored, t ignored


def test_model_pseudo_inverse_is_exact_when_the_model_agrees(gen):
    model = CopyDenoiser(5)
    x0 = torch.randint(5, (3, 7), generator=gen)
    for method in ("masked", "multinomial"):
        inv = dicelib.invert(model, x0, ["a", "b", "c"], method=method, steps=6, pseudo_inverse="model", generator=gen)
        assert inv.mismatch_rate == 0.0
        assert torch.equal(dicelib.reconstruct(model, inv), x0)


class ProtocolOnlyDenoiser:
    """A denoiser written from the SPEC §3 protocol alone: no nn.Module, dict conditions, callable null."""

    num_classes = 11
    mask_id = None

    def __init__(self):
        g = torch.Generator().manual_seed(99)
        self.table = torch.randn(12, 11, generator=g) * 4
        self.words = {"": 0, "cat": 1, "dog": 2}

    def null_cond(self, n):
        return {"word": [""] * n, "strength": torch.ones(n)}

    def logits(self, x, t, cond):
        ids = torch.tensor([self.words[w] for w in cond["word"]])
        shift = self.table[ids].unsqueeze(1) * cond["strength"].view(-1, 1, 1)
        return self.table[x.clamp(max=10)] * (1 - t.view(-1, 1, 1)) + shift


def test_unseen_protocol_denoiser_reconstructs_exactly(gen):
    model = ProtocolOnlyDenoiser()
    x0 = torch.randint(11, (2, 16), generator=gen)
    cond = {"word": ["cat", "dog"], "strength": torch.tensor([1.0, 0.5])}
    for pi in ("onehot", "lai"):
        for store in ("float32", "bfloat16", "none"):
            for cfg in (None, 4.0):
                inv = dicelib.invert(model, x0, cond, steps=10, pseudo_inverse=pi, store=store, cfg_scale=cfg, generator=gen)
                assert torch.equal(dicelib.edit(model, inv, cond, lambda1=1, lambda2=0, generator=gen), x0)
                target = {"word": ["dog", "dog"], "strength": torch.ones(2)}
                edited = [dicelib.edit(model, inv, target, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
                assert torch.equal(edited[0], edited[1]), "the same generator seed must give the same edit"
                assert edited[0].dtype == torch.long and edited[0].shape == x0.shape


def test_store_modes_give_identical_edits(gen):
    model = RandomDenoiser(9, 8)
    x0 = torch.randint(9, (2, 8), generator=gen)
    cond, target = torch.tensor([0, 1]), torch.tensor([2, 3])
    outs = []
    for store in ("float32", "none"):
        inv = dicelib.invert(model, x0, cond, steps=6, pseudo_inverse="lai", store=store, generator=torch.Generator().manual_seed(5))
        outs.append(dicelib.edit(model, inv, target, 0.6, 0.4, generator=torch.Generator().manual_seed(6)))
    assert torch.equal(outs[0], outs[1])


def test_same_seed_same_output_and_bfloat16_halves_memory(gen):
    model = RandomDenoiser(20, 6)
    x0 = torch.randint(20, (2, 6), generator=gen)
    cond = torch.tensor([1, 2])
    runs = [dicelib.invert(model, x0, cond, steps=4, pseudo_inverse="lai", generator=torch.Generator().manual_seed(3))
            for _ in range(2)]
    assert torch.equal(runs[0].latents, runs[1].latents)
    e = [dicelib.edit(model, r, torch.tensor([0, 0]), generator=torch.Generator().manual_seed(4)) for r in runs]
    assert torch.equal(e[0], e[1])
    half = dicelib.invert(model, x0, cond, steps=4, store="bfloat16", generator=torch.Generator().manual_seed(3))
    none = dicelib.invert(model, x0, cond, steps=4, store="none", generator=torch.Generator().manual_seed(3))
    assert half.latents.element_size() * 2 == runs[0].latents.element_size()
    assert none.latents is None and none.nbytes() < half.nbytes() < runs[0].nbytes()
