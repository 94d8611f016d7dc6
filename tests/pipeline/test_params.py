"""Every notebook stage checks all its params first, with one call, against rules declared next to its code.

A bad value in params.yaml stops the stage at once with a DiceError naming the key, the value and
what is allowed, instead of a traceback deep in the code or a bare AssertionError.
"""

from __future__ import annotations

import ast
import json
import math

import numpy as np
import pytest

from dicelib import DiceError
from dicelib.config import ROOT
from dicelib.errors import StageParams, check_params, integer, list_of, number, optional

from .stages import NOTEBOOK_STAGES, notebook_of, notebook_values, parameters_cell, pipeline_values


def _check_call(notebook: str) -> tuple[ast.Call, StageParams]:
    """Return the params check of a notebook (the first statement after the imports that follow the
    parameters cell) and the StageParams it calls, found by running those imports."""
    cells = [c for c in json.loads((ROOT / notebook).read_text())["cells"] if c["cell_type"] == "code"]
    after = cells[cells.index(parameters_cell(notebook)) + 1]
    body = ast.parse("".join(after["source"])).body
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    first = body[len(imports)]
    assert body[: len(imports)] == imports, f"{notebook}: the cell after the parameters starts with its imports"
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Call) and \
        isinstance(first.value.func, ast.Attribute) and first.value.func.attr == "check", \
        f"{notebook}: the first statement after the imports must check the params: {ast.unparse(first)[:80]}"
    namespace: dict = {}
    exec(compile(ast.Module(imports, []), notebook, "exec"), namespace)  # noqa: S102 - our notebook's imports
    return first.value, eval(ast.unparse(first.value.func.value), namespace)  # noqa: S307


@pytest.mark.parametrize("name", sorted(NOTEBOOK_STAGES))
def test_notebook_checks_every_parameter_before_any_work(name):
    notebook = notebook_of(NOTEBOOK_STAGES[name]["cmd"])
    call, rules = _check_call(notebook)
    declared = set(notebook_values(notebook))
    assert not call.args and {k.arg for k in call.keywords} == declared, f"{notebook} must pass every parameter by name"
    assert all(isinstance(k.value, ast.Name) and k.value.id == k.arg for k in call.keywords), "pass each as key=key"
    assert isinstance(rules, StageParams) and set(rules.rules) == declared


@pytest.mark.parametrize("name", sorted(NOTEBOOK_STAGES))
def test_params_yaml_and_the_notebook_defaults_pass(name):
    notebook = notebook_of(NOTEBOOK_STAGES[name]["cmd"])
    _, rules = _check_call(notebook)
    rules.check(**pipeline_values(NOTEBOOK_STAGES[name]["cmd"]))
    rules.check(**notebook_values(notebook))


BAD = [  # stage, key, bad value, what the message says is allowed
    ("mutual-information", "mc_samples", "lots", "an int >= 2"),
    ("mutual-information", "beta_end", 2.0, "a number in (0, 1)"),
    ("mutual-information", "discrete_classes", [1], "each an int >= 2"),
    ("mutual-information", "num_steps", 0, "an int >= 1"),
    ("mutual-information", "seed", "abc", "an int >= 0"),
    ("mutual-information", "mc_timesteps", [1, 5000], "every Monte Carlo timestep in 1..num_steps"),
    ("walkthrough", "tau", 1.5, "a number in (0, 1]"),
    ("walkthrough", "lambdas", [0.5, 2.0], "each a number in [0, 1]"),
    ("walkthrough", "case_id", "", "a non-empty string"),
    ("walkthrough", "cfg_scale", "high", "None or a finite number"),
    ("reconstruction", "split", "dev", "one of 'train', 'val', 'test'"),
    ("reconstruction", "models", ["dalle"], "each one of 'shapes-oracle', 'shapes'"),
    ("lambda-schedules", "models", "shapes", "a non-empty list"),
    ("reconstruction", "per_type", 0, "an int >= 1"),
    ("reconstruction", "noise", "gauss", "one of 'uniform', 'mask'"),
    ("reconstruction", "margin", math.inf, "a number >= 0.001"),
    ("editing-ablations", "pseudo_inverses", ["exact"], "each one of 'onehot', 'model', 'lai'"),
    ("editing-ablations", "injections", "add", "a non-empty list"),
    ("editing-ablations", "eval_per_type", True, "an int >= 1"),
    ("editing-ablations", "steps", 8.0, "an int >= 1"),
    ("lambda-schedules", "schedules", ["cosine"], "one of 'uniform', 'linear', 'exponential', 'mi'"),
    ("lambda-schedules", "lambdas", [0.0], "lambdas and lambda1_end > 0 when schedules include exponential"),
    ("lambda-schedules", "lambda1_end", "one", "a number in [0, 1]"),
    ("text-editing", "set1", [0.2], "a list of 2 items"),
    ("text-editing", "examples", ["sweep_0.3"], "examples among dice_<pi>_set1 / _set2 / _val"),
    ("text-editing", "temperature", 0, "a number > 0"),
    ("text-editing", "threads", 0, "an int >= 1"),
    ("text-editing", "pseudo_inverses", ["model"], "one of 'onehot', 'lai'"),
    ("explore", "method", "ddim", "one of 'masked', 'multinomial'"),
    ("explore", "recon_index", -1, "an int >= 0"),
    ("next-scale", "pseudo_inverses", ["exact"], "each one of 'onehot', 'model', 'lai'"),
    ("next-scale", "eval_per_type", 0, "an int >= 1"),
]


@pytest.mark.parametrize("name, key, bad, allowed", BAD, ids=[f"{s}-{k}" for s, k, *_ in BAD])
def test_a_bad_value_names_the_key_the_value_and_what_is_allowed(name, key, bad, allowed):
    cmd = NOTEBOOK_STAGES[name]["cmd"]
    _, rules = _check_call(notebook_of(cmd))
    with pytest.raises(DiceError) as err:
        rules.check(**{**pipeline_values(cmd), key: bad})
    message = str(err.value)
    assert f"{key} = {bad!r}" in message and allowed in message and rules.group in message, message


def test_every_stage_has_a_bad_value_above():
    assert {s for s, *_ in BAD} == set(NOTEBOOK_STAGES)


def test_numbers_are_numbers_of_any_kind_but_not_bools():
    rules = {"n": integer(1), "x": number(0, 1), "c": optional(number()), "ks": list_of(integer(2))}
    check_params("g", {"n": np.int64(3), "x": np.float32(0.5), "c": None, "ks": [2, np.int32(4)]}, rules)
    for key, bad in (("n", True), ("x", False), ("n", 2.0), ("x", math.nan), ("c", math.inf), ("ks", [])):
        with pytest.raises(DiceError, match=f"g: parameter {key} = "):
            check_params("g", {"n": 3, "x": 0.5, "c": 1.0, "ks": [2], key: bad}, rules)


def test_a_parameter_without_a_rule_is_reported():
    with pytest.raises(DiceError, match=r"parameters checked \['a', 'b'\] differ from those with rules \['a'\]"):
        check_params("g", {"a": 1, "b": 2}, {"a": integer(0)})
