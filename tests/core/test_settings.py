"""Each inversion and editing default is written once, in dicelib.core.settings; everything else reads it."""

from __future__ import annotations

import inspect
import io
import json
import re
import tokenize
from dataclasses import fields, replace

import torch

import dicelib
from dicelib.config import ROOT
from dicelib.core import masked, settings
from dicelib.core.schedules import LambdaSchedule
from dicelib.core.settings import EDIT, INVERT, EditSettings, InvertSettings, resolve_lambda2
from dicelib.core.toy import RandomDenoiser


def _defaults(fn) -> dict:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def test_invert_signature_and_opts_take_the_settings_defaults():
    given = _defaults(dicelib.invert) | _defaults(masked.draw_trajectory)
    for f in fields(InvertSettings):
        if f.name != "margin":
            assert given[f.name] == f.default, f.name
    model = RandomDenoiser(5, 4)
    inv = dicelib.invert(model, torch.zeros(1, 4, dtype=torch.long), torch.tensor([0]))
    assert (inv.margin, inv.steps, inv.noise_kind) == (INVERT.margin, settings.MASKED_STEPS, INVERT.noise)


def test_edit_signature_and_lambda_schedule_take_the_settings_defaults():
    given = _defaults(dicelib.edit)
    for f in fields(EditSettings):
        if f.name in {g.name for g in fields(InvertSettings)}:
            continue
        assert given[f.name] == f.default, f.name
    assert LambdaSchedule() == LambdaSchedule(EDIT.lambda_schedule, EDIT.lambda1, EDIT.lambda1_end)


def test_kwargs_round_trip_through_invert_and_edit():
    s = replace(EDIT, method="multinomial", lambda1=0.4)
    assert "noise" not in s.invert_kwargs() and set(s.edit_kwargs()) == {
        "lambda1", "lambda2", "injection", "lambda_schedule", "lambda1_end"}
    assert s.inversion() == replace(INVERT, method="multinomial") and hash(s.inversion())
    assert EditSettings.from_params({"lambda1": 0.9, "split": "val"}) == replace(EDIT, lambda1=0.9)
    assert resolve_lambda2(0.75, None) == 0.25 and resolve_lambda2(0.75, 0.1) == 0.1


def _code(source: str) -> str:
    """Return `source` without comments and string literals (docstrings may explain the convention)."""
    kept = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type not in (tokenize.COMMENT, tokenize.STRING)]
    return " ".join(kept)


def _sources() -> dict[str, str]:
    """Return the code of every dicelib module but settings, and of every notebook cell but the parameters."""
    out = {str(p.relative_to(ROOT)): _code(p.read_text()) for p in (ROOT / "dicelib").rglob("*.py") if p.name != "settings.py"}
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = [c for c in json.loads(nb.read_text())["cells"]
                 if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", [])]
        out[str(nb.relative_to(ROOT))] = _code("\n".join("".join(c["source"]) for c in cells))
    return out


HAND_MADE = [r"lambda2 = 1(\.0)? -", r"lambda1 [:=] 0\.7\b", r"lambda2 [:=] 0\.3\b", r"1(\.0)? - (float \( )?lambda1"]


def test_no_caller_works_out_lambda2_or_restates_a_default():
    """`lambda2 = 1 - lambda1` by hand, or an edit default as a literal, appears nowhere but in settings."""
    found = [f"{name}: {m.group(0)}" for name, code in _sources().items() for pat in HAND_MADE
             for m in re.finditer(pat, code)]
    assert found == []


def test_the_default_check_finds_a_hand_made_lambda2():
    code = _code('edit(model, inv, cond, lambda1=l, lambda2=1 - l)  # lambda2 = 1 - lambda1\n')
    assert any(re.search(p, code) for p in HAND_MADE) and not re.search(HAND_MADE[0], _code("# lambda2 = 1 - x\n"))
