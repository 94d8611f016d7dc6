"""Bad input raises a DiceError naming the problem; saved inversions round-trip and are validated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dicelib
from dicelib import DiceError, InversionFileError
from dicelib.core.toy import RandomDenoiser

MODEL = RandomDenoiser(6, 5)
X0 = torch.randint(6, (2, 5), generator=torch.Generator().manual_seed(0))
COND = torch.tensor([0, 1])
TEMPERATURE = "temperature must be a finite number >= 1.2e-38 (> 0, and 1 / temperature must not overflow float32), got"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(x0=X0.float()), "integer class ids"),
        (dict(x0=X0[0]), "shape [B, D]"),
        (dict(x0=X0 + 6), "K=6"),
        (dict(x0=X0 - 1), "x0 holds values in [-1, 4]; expected class ids 0..5 (the model has K=6 classes)"),
        (dict(x0=[[1, 2]]), "LongTensor"),
        (dict(cond=torch.tensor([0, 1, 2])), "3 rows but x0 has 2"),
        (dict(method="ddim"), "unknown method 'ddim'"),
        (dict(pseudo_inverse="exact"), "unknown pseudo_inverse 'exact'"),
        (dict(store="float16"), "unknown store 'float16'"),
        (dict(tau=0.0), "tau must be a number in (0, 1]"),
        (dict(tau=1.5), "tau must be a number in (0, 1]"),
        (dict(steps=0), "steps must be an int >= 1"),
        (dict(steps=2.5), "steps must be an int >= 1"),
        (dict(mask_schedule="sqrt"), "unknown mask schedule 'sqrt'"),
        (dict(noise="gauss"), "unknown noise kind 'gauss'"),
        (dict(margin=0.0), "LAI margin"),
        (dict(temperature=0), f"{TEMPERATURE} 0"),
        (dict(cfg_scale="high"), "cfg_scale must be None"),
        (dict(schedule=None, bogus=1), "unknown option(s) ['bogus', 'schedule']"),
        (dict(generator=0), "torch.Generator"),
        (dict(margin=float("inf")), "LAI margin must be a finite number >= 0.001 (float32 rounding must not flip the argmax), got inf"),
        (dict(margin=float("nan")), "got nan"),
        (dict(tau=float("nan")), "tau must be a number in (0, 1], got nan"),
        (dict(tau=True), "tau must be a number in (0, 1], got True"),
        (dict(steps=True), "steps must be an int >= 1, got True"),
        (dict(steps=np.float64(4.0)), "steps must be an int >= 1"),
        (dict(cfg_scale=True), "cfg_scale must be None or a finite number, got True"),
        (dict(cfg_scale=float("inf")), "cfg_scale must be None or a finite number, got inf"),
        (dict(cfg_scale=float("nan")), "got nan"),
        (dict(temperature=float("inf")), f"{TEMPERATURE} inf"),
        (dict(temperature=1e-40), "temperature must be a finite number >= 1.2e-38"),
        (dict(temperature=np.float32("nan")), "temperature must be a finite number"),
        (dict(cfg_scale=1e38), "log-probs became non-finite (NaN or inf) with cfg_scale=1e+38, temperature=1.0"),
        (dict(method="multinomial", cfg_scale=-1e38), "with cfg_scale=-1e+38"),
        (dict(method="multinomial", steps=8, schedule=dicelib.MultinomialSchedule.vq_linear(7)),
         "steps=8 exceeds the transition schedule's T=7; steps must be in 1..7"),
    ],
)
def test_invert_rejects_bad_input(kwargs, message):
    args = dict(model=MODEL, x0=X0, cond=COND) | kwargs
    with pytest.raises(DiceError) as err:
        dicelib.invert(**args)
    assert message in str(err.value)


def test_invert_rejects_a_non_denoiser_and_multinomial_without_mask_state():
    with pytest.raises(DiceError, match="not a DiscreteDenoiser"):
        dicelib.invert(object(), X0, COND)

    nomask = RandomDenoiser(6, 5)
    nomask.mask_id = None
    with pytest.raises(DiceError, match="mask_id is None"):
        dicelib.invert(nomask, X0, COND, noise="mask")
    with pytest.raises(DiceError, match="index K=6"):
        dicelib.invert(nomask, X0, COND, method="multinomial")


@pytest.fixture
def inv():
    return dicelib.invert(MODEL, X0, COND, steps=4, pseudo_inverse="lai")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model=RandomDenoiser(7, 5)), "K=6 classes but this model has K=7"),
        (dict(model=RandomDenoiser(6, 9)), "D=5 positions but this model takes D=9"),
        (dict(injection="mul"), "unknown injection 'mul'"),
        (dict(lambda_schedule="cosine"), "unknown lambda schedule 'cosine'"),
        (dict(lambda1=float("nan")), "lambda1 must be a finite number"),
        (dict(lambda2=-0.5, injection="variance_preserving"), ">= 0 for variance_preserving"),
        (dict(cond=torch.tensor([0])), "1 rows but x0 has 2"),
        (dict(inv="not an inversion"), "must be a dicelib.Inversion"),
        (dict(lambda1=float("inf")), "lambda1 must be a finite number, got inf"),
        (dict(lambda2=float("nan")), "lambda2 must be a finite number, got nan"),
        (dict(lambda1=True), "lambda1 must be a finite number, got True"),
        (dict(lambda1_end=float("nan"), lambda_schedule="linear"), "lambda1_end must be a finite number, got nan"),
        (dict(lambda1_end=float("inf")), "lambda1_end must be a finite number, got inf"),
        (dict(temperature=float("inf")), f"{TEMPERATURE} inf"),
        (dict(temperature=True), f"{TEMPERATURE} True"),
        (dict(cfg_scale=float("nan")), "cfg_scale must be None or a finite number, got nan"),
        (dict(cfg_scale=1e38), "non-finite (NaN or inf) with cfg_scale=1e+38"),
        (dict(cfg_scale=np.float32(1e38)), "non-finite (NaN or inf) with cfg_scale=9.99999968"),
        (dict(cond=["a", "b"]), "cannot batch a list condition with a Tensor condition"),
    ],
)
def test_edit_rejects_bad_input(inv, kwargs, message):
    if "cond" in kwargs:  # store="none" batches the edit's condition with the inversion's
        inv = dicelib.invert(MODEL, X0, COND, steps=4, pseudo_inverse="lai", store="none")
    args = dict(model=MODEL, inv=inv, cond=COND) | kwargs
    with pytest.raises(DiceError) as err:
        dicelib.edit(**args)
    assert message in str(err.value)


@pytest.mark.parametrize("store", ["float32", "bfloat16", "none"])
def test_saved_inversion_round_trips(tmp_path, store):
    inv = dicelib.invert(MODEL, X0, COND, steps=4, pseudo_inverse="lai", store=store, cfg_scale=2.0)
    path = inv.save(tmp_path / "sub" / "inv.pt")
    back = dicelib.Inversion.load(path)
    assert back.store == store and back.cfg_scale == 2.0 and back.lai_seed == inv.lai_seed
    assert torch.equal(dicelib.reconstruct(MODEL, back), X0)
    g = lambda: torch.Generator().manual_seed(1)
    assert torch.equal(dicelib.edit(MODEL, back, torch.tensor([3, 3]), generator=g()),
                       dicelib.edit(MODEL, inv, torch.tensor([3, 3]), generator=g()))
    assert not list(path.parent.glob("*.tmp")), "atomic save left a temp file"


def test_load_rejects_corrupt_foreign_and_future_files(tmp_path, inv):
    with pytest.raises(InversionFileError, match="no saved inversion"):
        dicelib.Inversion.load(tmp_path / "missing.pt")
    good = inv.save(tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InversionFileError, match="not a readable dicelib inversion"):
        dicelib.Inversion.load(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(InversionFileError, match="not a dicelib inversion"):
        dicelib.Inversion.load(foreign)
    data = inv.to_dict()
    for change, message in [({"format_version": 99}, "format version 99"),
                            ({"latents": inv.latents[:2]}, "latents must be a [n, B, D, K'] = [4, 2, 5, 6] float32 tensor, got a float32 tensor [2, 2, 5, 6]"),
                            ({"u": None}, "u must be a [B, D]")]:
        path = tmp_path / "bad.pt"
        torch.save(data | change, path)
        with pytest.raises(InversionFileError, match=message.replace("[", r"\[")):
            dicelib.Inversion.load(path)
    missing = {k: v for k, v in data.items() if k != "x0"}
    torch.save(missing, tmp_path / "missing_key.pt")
    with pytest.raises(InversionFileError, match="missing inversion fields: x0"):
        dicelib.Inversion.load(tmp_path / "missing_key.pt")


def test_log_probs_that_overflow_at_a_tiny_temperature_name_it():
    """A valid temperature can still overflow float32 with large logits: the check sees what is used."""
    with pytest.raises(DiceError, match=r"log-probs became non-finite .* temperature=1e-36"):
        dicelib.invert(RandomDenoiser(6, 5, scale=1e3), X0, COND, temperature=1e-36)


class NullScalar(RandomDenoiser):
    """A model whose condition is a [B] tensor and whose null condition is, naturally, a 0-d tensor."""

    @property
    def null_cond(self):
        return torch.tensor(self.num_conds)


def test_numpy_scalars_are_numbers_and_a_0d_null_cond_is_one_row():
    model = NullScalar(6, 5)
    plain = dict(steps=4, tau=0.75, cfg_scale=3.0, temperature=0.5, margin=2.0)
    numpy = dict(steps=np.int64(4), tau=np.float32(0.75), cfg_scale=np.float32(3.0), temperature=np.float32(0.5),
                 margin=np.float32(2.0))
    invs = [dicelib.invert(model, X0, COND, pseudo_inverse="lai", generator=torch.Generator().manual_seed(0), **kw)
            for kw in (plain, numpy)]
    assert torch.equal(invs[0].latents, invs[1].latents) and invs[1].steps == 4 and type(invs[1].steps) is int
    assert torch.equal(invs[0].latents, dicelib.invert(MODEL, X0, COND, pseudo_inverse="lai",
                                                       generator=torch.Generator().manual_seed(0), **plain).latents)
    edits = [dicelib.edit(model, invs[1], torch.tensor([2, 3]), generator=torch.Generator().manual_seed(1), **kw)
             for kw in (dict(lambda1=0.75, lambda2=0.25, cfg_scale=2.0, temperature=1.0),
                        dict(lambda1=np.float32(0.75), lambda2=np.float16(0.25), cfg_scale=np.int64(2), temperature=np.float64(1)))]
    assert torch.equal(edits[0], edits[1])
