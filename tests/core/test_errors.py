"""Bad input raises a DiceError naming the problem; saved inversions round-trip and are validated."""

from __future__ import annotations

import pytest
import torch

import dicelib
from dicelib import DiceError, InversionFileError
from dicelib.core.toy import RandomDenoiser

MODEL = RandomDenoiser(6, 5)
X0 = torch.randint(6, (2, 5), generator=torch.Generator().manual_seed(0))
COND = torch.tensor([0, 1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(x0=X0.float()), "integer class ids"),
        (dict(x0=X0[0]), "shape [B, D]"),
        (dict(x0=X0 + 6), "K=6"),
        (dict(x0=X0 - 1), "class ids in [-1"),
        (dict(x0=[[1, 2]]), "LongTensor"),
        (dict(cond=torch.tensor([0, 1, 2])), "3 rows but x0 has 2"),
        (dict(method="ddim"), "unknown method 'ddim'"),
        (dict(pseudo_inverse="exact"), "unknown pseudo_inverse 'exact'"),
        (dict(store="float16"), "unknown store 'float16'"),
        (dict(tau=0.0), "tau must lie in (0, 1]"),
        (dict(tau=1.5), "tau must lie in (0, 1]"),
        (dict(steps=0), "steps must be an int >= 1"),
        (dict(steps=2.5), "steps must be an int >= 1"),
        (dict(mask_schedule="sqrt"), "unknown mask schedule 'sqrt'"),
        (dict(noise="gauss"), "unknown noise kind 'gauss'"),
        (dict(margin=0.0), "LAI margin"),
        (dict(temperature=0), "temperature must be a number > 0"),
        (dict(cfg_scale="high"), "cfg_scale must be None"),
        (dict(schedule=None, bogus=1), "unknown option(s) ['bogus', 'schedule']"),
        (dict(generator=0), "torch.Generator"),
        (dict(method="multinomial", steps=5, schedule=dicelib.MultinomialSchedule.vq_linear(7)), "does not match"),
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
    ],
)
def test_edit_rejects_bad_input(inv, kwargs, message):
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
                            ({"latents": inv.latents[:2]}, "latents have shape"),
                            ({"u": None}, "u must be a [B, D]")]:
        path = tmp_path / "bad.pt"
        torch.save(data | change, path)
        with pytest.raises(InversionFileError, match=message.replace("[", r"\[")):
            dicelib.Inversion.load(path)
    missing = {k: v for k, v in data.items() if k != "x0"}
    torch.save(missing, tmp_path / "missing_key.pt")
    with pytest.raises(InversionFileError, match="missing inversion fields: x0"):
        dicelib.Inversion.load(tmp_path / "missing_key.pt")
