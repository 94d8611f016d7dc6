"""Multinomial diffusion on a sub-grid of the schedule's timesteps (`steps` <= T): skip posteriors,
exact reconstruction at every step count, and the recorded results for steps = T or None (tokens exactly,
floats within a stated tolerance)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dicelib
from dicelib.core.multinomial import MultinomialTrajectory, draw_trajectory, timestep_grid
from dicelib.core.toy import RandomDenoiser
from dicelib.core.transitions import cumulative_matrix
from dicelib.errors import DiceError, InversionFileError
from tests.numerics import assert_matches_recorded
from tests.core.test_invariant import Recording, inversion_states
from tests.core.test_transitions import K, brute_force_posterior, composed

FIXTURE = Path(__file__).parents[1] / "fixtures" / "multinomial_steps_expected.pt"


class ScheduledDenoiser(RandomDenoiser):
    """A RandomDenoiser carrying its own `transition_schedule` (replacement-heavy, T = 9)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        t = torch.linspace(0, 1, 10, dtype=torch.float64)
        self.transition_schedule = dicelib.MultinomialSchedule(1 - 0.9 * t, 0.5 * t)


def reference_runs(steps_for_t) -> dict[str, torch.Tensor]:
    """Return named tensors from inversions and edits on toy models; `steps_for_t(T)` gives the `steps`
    passed where the schedule's T is T (None or T itself). Uses the public API only: the fixture holds
    this function's output on the code before sub-grids (commit d4e1da9)."""
    out = {}
    model = RandomDenoiser(7, 5, seed=3)
    gen = torch.Generator().manual_seed(11)
    x0 = torch.randint(7, (2, 5), generator=gen)
    cond, target = torch.tensor([0, 1]), torch.tensor([2, 3])
    schedule = dicelib.MultinomialSchedule.vq_linear(12)
    for pi in ("onehot", "lai", "model"):
        for tau in (1.0, 0.6):
            inv = dicelib.invert(model, x0, cond, method="multinomial", steps=steps_for_t(12), tau=tau, pseudo_inverse=pi,
                                 cfg_scale=3.0, schedule=schedule, generator=torch.Generator().manual_seed(5))
            key = f"{pi}/{tau}"
            out[f"{key}/latents"], out[f"{key}/trajectory"], out[f"{key}/levels"] = inv.latents, inv.trajectory, inv.levels
            out[f"{key}/edit"] = dicelib.edit(model, inv, target, 0.7, 0.3, generator=torch.Generator().manual_seed(6))
            out[f"{key}/reconstruction"] = dicelib.reconstruct(model, inv)
    none = dicelib.invert(model, x0, cond, method="multinomial", steps=steps_for_t(12), tau=0.6, pseudo_inverse="lai",
                          store="none", schedule=schedule, generator=torch.Generator().manual_seed(5))
    out["none/edit"] = dicelib.edit(model, none, target, 0.5, 0.5, generator=torch.Generator().manual_seed(6))
    own = ScheduledDenoiser(7, 5, seed=4)  # the model's own schedule
    inv = dicelib.invert(own, x0, cond, method="multinomial", steps=steps_for_t(9), pseudo_inverse="lai",
                         generator=torch.Generator().manual_seed(7))
    out["own/latents"] = inv.latents
    out["own/edit"] = dicelib.edit(own, inv, target, 0.8, 0.2, generator=torch.Generator().manual_seed(8))
    # no schedule anywhere: VQ-linear over `steps` (default 100), so steps is T here by definition
    for steps in (None, 6):
        inv = dicelib.invert(model, x0, cond, method="multinomial", steps=steps, pseudo_inverse="onehot",
                             generator=torch.Generator().manual_seed(9))
        out[f"default/{steps}/latents"] = inv.latents
        out[f"default/{steps}/edit"] = dicelib.edit(model, inv, target, 0.6, 0.4, generator=torch.Generator().manual_seed(10))
    return out


def test_steps_none_and_t_match_the_recording_from_before():
    """The fixture: reference_runs on commit d4e1da9 (every timestep, the only grid there was)."""
    expected = torch.load(FIXTURE, weights_only=True)
    for steps_for_t in (lambda big_t: None, lambda big_t: big_t):
        got = reference_runs(steps_for_t)
        assert got.keys() == expected.keys()
        for name, want in expected.items():  # tokens exactly; latents within a few ulps (tests/numerics.py says why)
            assert_matches_recorded(got[name], want, name)


@pytest.mark.parametrize("big_t", [1, 2, 7, 100, 250])
@pytest.mark.parametrize("tau", [1.0, 0.9, 0.5, 0.13, 0.001])
def test_timestep_grid_is_even_integer_and_ends_at_t0(big_t, tau):
    t0 = max(1, round(tau * big_t))
    assert timestep_grid(big_t, tau, big_t) == list(range(1, t0 + 1))  # steps = T: every timestep
    for steps in range(1, big_t + 1):
        grid = timestep_grid(steps, tau, big_t)
        gaps = [b - a for a, b in zip([0] + grid, grid)]
        assert len(grid) == max(1, round(tau * steps)) and grid[-1] == t0, (steps, grid)
        assert min(gaps) >= 1 and max(gaps) - min(gaps) <= 1, (steps, grid)  # evenly spaced integers


class LevelRecording(Recording):
    """Records the editing rows' states and the noise levels the model is told."""

    def __init__(self, model, rows: int):
        super().__init__(model, rows)
        self.levels = []

    def logits(self, x, t, cond):
        self.levels.append(t[: self.rows].clone())
        return super().logits(x, t, cond)


def invert_and_reconstruct(model, x0, cond, gen, **kwargs):
    """Return (inversion, reconstruction, model recording of the reconstruction) for multinomial invert(**kwargs)."""
    inv = dicelib.invert(model, x0, cond, method="multinomial", generator=gen, **kwargs)
    recording = LevelRecording(model, x0.shape[0])
    out = dicelib.edit(recording, inv, cond, lambda1=1.0, lambda2=0.0, generator=gen)
    return inv, out, recording


@pytest.mark.parametrize("steps", [10, 25, 100])
@pytest.mark.parametrize("pseudo_inverse", ["onehot", "lai"])
@pytest.mark.parametrize("store", ["float32", "none"])
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_exact_reconstruction_on_a_sub_grid_of_t_100(steps, pseudo_inverse, store, tau):
    model = RandomDenoiser(16, 6, seed=steps)
    gen = torch.Generator().manual_seed(steps)
    x0, cond = torch.randint(16, (2, 6), generator=gen), torch.tensor([0, 3])
    inv, out, rec = invert_and_reconstruct(model, x0, cond, gen, steps=steps, tau=tau, pseudo_inverse=pseudo_inverse,
                                           store=store, cfg_scale=3.0, schedule=dicelib.MultinomialSchedule.vq_linear(100))
    grid = timestep_grid(steps, tau, 100)
    assert inv.steps == 100 and inv.levels.tolist() == [t / 100 for t in grid] and inv.trajectory.shape[0] == len(grid)
    assert torch.equal(out, x0)
    assert all(torch.equal(x, want) for x, want in zip(rec.seen, inversion_states(inv))) and len(rec.seen) == len(grid)
    assert [float(v[0]) for v in rec.levels] == [float(torch.tensor(t / 100, dtype=torch.float32)) for t in grid[::-1]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(big_t=st.integers(1, 40), data=st.data(), tau=st.floats(0.01, 1.0), k=st.integers(2, 24), d=st.integers(1, 7),
       pseudo_inverse=st.sampled_from(["onehot", "lai"]), store=st.sampled_from(["float32", "bfloat16", "none"]),
       seed=st.integers(0, 2**31 - 1))
def test_exact_reconstruction_at_every_step_count_property(big_t, data, tau, k, d, pseudo_inverse, store, seed):
    steps = data.draw(st.integers(1, big_t))
    model = RandomDenoiser(k, d, seed=seed % 1000)
    gen = torch.Generator().manual_seed(seed)
    x0, cond = torch.randint(k, (2, d), generator=gen), torch.randint(model.num_conds, (2,), generator=gen)
    inv, out, rec = invert_and_reconstruct(model, x0, cond, gen, steps=steps, tau=tau, pseudo_inverse=pseudo_inverse,
                                           store=store, schedule=dicelib.MultinomialSchedule.vq_linear(big_t))
    assert torch.equal(out, x0)
    assert len(rec.seen) == inv.num_edit_steps == len(timestep_grid(steps, tau, big_t))
    assert all(torch.equal(x, want) for x, want in zip(rec.seen, inversion_states(inv)))


def test_each_step_predicts_the_previous_grid_state_with_the_skip_posterior(gen):
    """yhat at step index i is q(x_{s_i} | x_{s_{i+1}}, x0) for a one-hot p(x0): checked against Bayes with
    composed one-step matrices, so editing jumps between the grid's timesteps and nowhere else."""
    schedule = dicelib.MultinomialSchedule.vq_linear(100)
    model = RandomDenoiser(K, 8)
    x0 = torch.randint(K, (1, 8), generator=gen)
    inv = dicelib.invert(model, x0, method="multinomial", steps=10, tau=0.6, store="none", schedule=schedule, generator=gen)
    traj = MultinomialTrajectory(inv)
    grid = [0] + timestep_grid(10, 0.6, 100)
    assert grid == [0, 10, 20, 30, 40, 50, 60] and traj.timesteps == grid
    delta = torch.full((1, 8, K), float("-inf")).scatter_(-1, x0.unsqueeze(-1), 0.0)
    for i in range(len(grid) - 1):
        x = traj.state(i)
        got = traj.yhat(delta, x, i).double().exp()[0]
        q_st, q_s = composed(grid[i], grid[i + 1], schedule), cumulative_matrix(grid[i], schedule, K)
        for pos in range(8):
            want = brute_force_posterior(delta[0, pos].double().exp(), int(x[0, pos]), q_st, q_s)
            assert torch.allclose(got[pos], want, atol=1e-5), (i, pos)


def test_fewer_steps_with_the_models_own_schedule_and_a_saved_inversion(tmp_path, gen):
    model = ScheduledDenoiser(7, 5, seed=1)  # T = 9
    x0, cond = torch.randint(7, (2, 5), generator=gen), torch.tensor([1, 2])
    inv = dicelib.invert(model, x0, cond, method="multinomial", steps=4, pseudo_inverse="lai", generator=gen)
    assert inv.steps == 9 and (inv.levels * 9).round().tolist() == timestep_grid(4, 1.0, 9)
    loaded = dicelib.Inversion.load(inv.save(tmp_path / "inv.pt"))
    assert torch.equal(dicelib.reconstruct(model, loaded), x0)
    target = torch.tensor([3, 3])
    edits = [dicelib.edit(model, v, target, generator=torch.Generator().manual_seed(2)) for v in (inv, loaded)]
    assert torch.equal(edits[0], edits[1])


@pytest.mark.parametrize("steps, message", [
    (101, "steps=101 exceeds the transition schedule's T=100; steps must be in 1..100 (fewer steps skip timesteps) or None"),
    (0, "steps must be an int >= 1, got 0"),
    (-3, "steps must be an int >= 1, got -3"),
])
def test_steps_outside_1_to_t_are_rejected(steps, message):
    model = RandomDenoiser(5, 3)
    with pytest.raises(DiceError) as err:
        dicelib.invert(model, torch.zeros(1, 3, dtype=torch.long), method="multinomial", steps=steps,
                       schedule=dicelib.MultinomialSchedule.vq_linear(100))
    assert message in str(err.value)
    with pytest.raises(DiceError) as err:  # the trajectory's own check, without invert's
        draw_trajectory(model, torch.zeros(1, 3, dtype=torch.long), steps, 1.0, torch.Generator(),
                        dicelib.MultinomialSchedule.vq_linear(100))
    assert message in str(err.value)


@pytest.mark.parametrize("levels, bad", [
    ([0.1, 0.25, 0.5], "[1.0, 2.5, 5.0]"),  # 2.5 is no timestep
    ([0.0001, 0.5], "[0.001, 5.0]"),  # rounds to t = 0
])
def test_a_saved_inversion_off_the_timestep_grid_is_rejected(levels, bad, gen):
    model = RandomDenoiser(5, 3)
    inv = dicelib.invert(model, torch.zeros(1, 3, dtype=torch.long), method="multinomial", steps=len(levels), pseudo_inverse="lai",
                         store="none", schedule=dicelib.MultinomialSchedule.vq_linear(10), generator=gen)
    inv.levels = torch.tensor(levels, dtype=torch.float64)
    with pytest.raises(InversionFileError, match=re.escape(f"levels * T = {bad}")):
        inv.validate()
