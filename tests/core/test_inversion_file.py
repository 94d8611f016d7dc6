"""A saved inversion is checked field by field on load (type, range, finiteness): a bad file is an
InversionFileError naming the field, never a later IndexError or a silently wrong reconstruction."""

from __future__ import annotations

import pytest
import torch

import dicelib
from dicelib import InversionFileError
from dicelib.core.toy import RandomDenoiser

MODEL = RandomDenoiser(6, 5)
X0 = torch.randint(6, (2, 5), generator=torch.Generator().manual_seed(0))
COND = torch.tensor([0, 1])


@pytest.fixture(scope="module")
def invs():
    opts = {"masked": dict(steps=4), "multinomial": dict(schedule=dicelib.MultinomialSchedule.vq_linear(4))}
    return {m: dicelib.invert(MODEL, X0, COND, method=m, pseudo_inverse="lai", **o) for m, o in opts.items()}


def _set(t: torch.Tensor, value) -> torch.Tensor:
    out = t.clone()
    out.view(-1)[0] = value
    return out


CASES = [  # (method, change of the saved dict, words the error must contain)
    ("masked", lambda d: {"latents": _set(d["latents"], float("nan"))}, "latents holds values in [nan, nan]; expected finite values"),
    ("masked", lambda d: {"latents": _set(d["latents"], float("-inf"))}, "latents holds values in [-inf, "),
    ("masked", lambda d: {"latents": d["latents"].long()}, "latents must be a [n, B, D, K'] = [4, 2, 5, 6] float32 tensor, got a "),
    ("masked", lambda d: {"latents": d["latents"].bfloat16()}, "latents must be a [n, B, D, K'] = [4, 2, 5, 6] float32 tensor, got a "),
    ("masked", lambda d: {"noise": _set(d["noise"], 6)}, "noise holds values in [0, 6]; expected token ids 0..5 (uniform noise)"),
    ("masked", lambda d: {"noise": d["noise"].float()}, "noise must be a [B, D] = [2, 5] int64 tensor, got a float32 tensor [2, 5]"),
    ("masked", lambda d: {"x0": _set(d["x0"], 6)}, "x0 holds values in [0, 6]; expected class ids 0..5 (K = 6)"),
    ("masked", lambda d: {"x0": _set(d["x0"], -1)}, "x0 holds values in [-1, "),
    ("masked", lambda d: {"x0": d["x0"][0]}, "x0 must be a [B, D] int64 tensor, got a int64 tensor [5]"),
    ("masked", lambda d: {"levels": d["levels"].flip(0)}, "levels must increase strictly from above 0"),
    ("masked", lambda d: {"levels": _set(d["levels"], float("nan"))}, "levels holds values in [nan, nan]"),
    ("masked", lambda d: {"levels": d["levels"] * 2}, "levels holds values in [0.5, 2]; expected noise levels in (0, 1]"),
    ("masked", lambda d: {"u": _set(d["u"], 1.5)}, "expected uniform draws in [0, 1)"),
    ("masked", lambda d: {"pseudo_inverse": "exact"}, "unknown pseudo_inverse 'exact'"),
    ("masked", lambda d: {"mask_schedule": "sqrt"}, "unknown mask schedule 'sqrt'"),
    ("masked", lambda d: {"noise_kind": "gauss"}, "unknown noise kind 'gauss'"),
    ("masked", lambda d: {"num_classes": "6"}, "num_classes must be an int >= 2, got '6'"),
    ("masked", lambda d: {"steps": 2.0}, "steps must be an int >= 1, got 2.0"),
    ("masked", lambda d: {"tau": float("nan")}, "tau must be a number in (0, 1], got nan"),
    ("masked", lambda d: {"margin": float("inf")}, "LAI margin must be a finite number"),
    ("masked", lambda d: {"temperature": "1"}, "temperature must be a finite number >= 1.2e-38 (> 0, and 1 / temperature must not overflow float32), got '1'"),
    ("masked", lambda d: {"cfg_scale": float("nan")}, "cfg_scale must be None or a finite number"),
    ("masked", lambda d: {"lai_seed": 1.5}, "lai_seed must be None or an int"),
    ("masked", lambda d: {"mismatch_rate": 2.0}, "mismatch_rate must be None or a number in [0, 1]"),
    ("masked", lambda d: {"cond": torch.tensor([0, 1, 2])}, "cond has 3 rows but x0 has 2"),
    ("multinomial", lambda d: {"trajectory": _set(d["trajectory"], 7)}, "trajectory holds values in [0, 7]; expected states 0..6"),
    ("multinomial", lambda d: {"trajectory": d["trajectory"][:, :1]}, "trajectory must be a [n, B, D] = [4, 2, 5] int64 tensor"),
    ("multinomial", lambda d: {"latents": d["latents"][..., :-1]}, "latents must be a [n, B, D, K'] = [4, 2, 5, 7] float32 tensor"),
    ("multinomial", lambda d: {"alpha_bar": _set(d["alpha_bar"], 2.0)}, "alpha_bar holds values in [9e-06, 2]"),
    ("multinomial", lambda d: {"levels": d["levels"] + 1}, "levels holds values in"),
]


@pytest.mark.parametrize("method, change, message", CASES, ids=[f"{c[0]}-{c[2][:30]}" for c in CASES])
def test_load_names_the_bad_field(tmp_path, invs, method, change, message):
    data = invs[method].to_dict()
    path = tmp_path / "bad.pt"
    torch.save(data | change(data), path)
    with pytest.raises(InversionFileError) as err:
        dicelib.Inversion.load(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_edit_validates_an_inversion_changed_in_memory(invs):
    import dataclasses

    bad = dataclasses.replace(invs["masked"], noise=invs["masked"].noise + 6)
    with pytest.raises(InversionFileError, match=r"inversion: noise holds values in \[6, "):
        dicelib.reconstruct(MODEL, bad)


def test_load_of_a_pickled_inversion_says_how_to_save_and_convert(tmp_path, invs):
    path = tmp_path / "pickled.pt"
    torch.save(invs["masked"], path)
    with pytest.raises(InversionFileError) as err:
        dicelib.Inversion.load(path)
    msg = str(err.value)
    assert "pickled Inversion object" in msg and "Inversion.save" in msg and "weights_only=False" in msg and str(path) in msg
    back = torch.load(path, weights_only=False)  # the conversion the message describes, for a trusted file
    assert torch.equal(dicelib.reconstruct(MODEL, dicelib.Inversion.load(back.save(tmp_path / "converted.pt"))), X0)


def test_nbytes_sums_the_tensors_without_copying_them(invs, monkeypatch):
    inv = invs["multinomial"]
    expected = sum(t.numel() * t.element_size() for t in (inv.x0, inv.cond, inv.levels, inv.latents, inv.trajectory,
                                                          inv.alpha_bar, inv.gamma_bar))

    def no_copy(*args, **kwargs):
        raise AssertionError("nbytes copied a tensor")

    monkeypatch.setattr(torch.Tensor, "__deepcopy__", no_copy)
    monkeypatch.setattr(torch.Tensor, "clone", no_copy)
    assert inv.nbytes() == expected
