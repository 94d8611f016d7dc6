"""Notebook parameter cells differ from params.yaml only in size (cases, samples, steps), never in kind.

A teaching-size notebook may use less work (SIZE_KEYS) and sweep fewer of the pipeline's values (a
list that is a subset of params.yaml's), but every setting it uses is one the pipeline uses.
"""

from __future__ import annotations

import pytest

from .stages import NOTEBOOK_STAGES, PARAMS, notebook_of, notebook_values as _notebook_values, \
    pipeline_values as _pipeline_values

# keys that set how much work a run does; a teaching-size notebook may use less of it
SIZE_KEYS = {"steps", "per_type", "sweep_per_type", "eval_per_type", "n_pairs", "val_pairs", "judge_pairs", "n_examples",
             "mc_samples", "mc_timesteps", "discrete_classes", "discrete_steps"}

STAGES = NOTEBOOK_STAGES


def _fewer_of_the_same(teaching, pipeline) -> bool:
    """Return True when a teaching sweep list takes some of the pipeline's values and nothing else."""
    return isinstance(teaching, list) and isinstance(pipeline, list) and bool(teaching) and \
        all(v in pipeline for v in teaching)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_notebook_defaults_match_params_except_in_size(name):
    cmd = STAGES[name]["cmd"]
    notebook = notebook_of(cmd)
    passed, defaults = _pipeline_values(cmd), _notebook_values(notebook)
    assert set(defaults) == set(passed), f"{notebook}: parameters the stage does not pass: {set(defaults) - set(passed)}"
    differ = {k: (defaults[k], passed[k]) for k in passed if defaults[k] != passed[k] and k not in SIZE_KEYS
              and not _fewer_of_the_same(defaults[k], passed[k])}
    assert not differ, f"{notebook} differs from params.yaml in kind, not size: {differ}"


def test_the_check_sees_a_difference_in_kind():
    cmd = STAGES["lambda-schedules"]["cmd"]
    passed = _pipeline_values(cmd)
    assert passed["pseudo_inverse"] == PARAMS["lambda_schedules"]["pseudo_inverse"]
    assert passed["schedules"] == ["uniform", "linear", "exponential", "mi"]  # -y lists are parsed, not strings
    assert _fewer_of_the_same(["mi"], passed["schedules"]) and not _fewer_of_the_same(["mi", "cosine"], passed["schedules"])
    assert not _fewer_of_the_same([], passed["schedules"]) and not _fewer_of_the_same("lai", "model")
