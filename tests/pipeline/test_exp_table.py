"""The experiments view (`make exp`): one row per experiment, the params that differ, the headline metrics, <= 120 columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicelib import exp_table
from dicelib.config import ROOT
from dicelib.errors import DiceError

# `dvc exp show --json` of this repository with two queued experiments (-S "editing.lambdas='[0.3, 0.5, 0.7, 0.9]'",
# and -S editing.steps=12 -S shapes_sweep.steps=12), params cut to three groups
SHOW = json.loads((Path(__file__).parents[1] / "fixtures" / "exp_show.json").read_text())


def test_rows_show_changed_params_and_headlines_within_the_width():
    table = exp_table.rows(SHOW)
    assert [r["name"] for r in table] == ["workspace", "first-hour", "  more-lambdas (queued)", "  steps-12 (queued)"]
    assert exp_table.changed(table) == ["editing.lambdas", "editing.steps", "shapes_sweep.steps"]  # seed etc. equal
    text = exp_table.render(table, 120)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    assert "editing.lambdas=[0.3,0.5,0.7,0.9]" in text and "editing.steps=12" in text
    workspace = lines[3].split()
    assert workspace[0] == "workspace" and workspace[-6:] == ["0.8139", "0.9583", "0.4274", "0.366", "0.5229", "0.3418"]
    assert lines[7].split()[-6:] == ["-"] * 6  # queued: no metrics yet
    assert max(map(len, exp_table.render(table, 110).splitlines())) <= 110
    with pytest.raises(DiceError, match="width 60 is too narrow"):
        exp_table.render(table, 60)


def test_the_repository_view_fits_120_columns_and_reads_the_committed_metrics():
    text = exp_table.render(exp_table.rows(exp_table.show_json()), 120)
    assert max(map(len, text.splitlines())) <= 120
    edit_score = json.loads((ROOT / "reports" / "metrics" / "editing_oracle.json").read_text())["edit_score"]
    assert text.splitlines()[3].startswith("workspace") and f"{edit_score:.4g}" in text.splitlines()[3]


def test_every_headline_is_a_key_its_metrics_file_has():
    for _, _, path, key in exp_table.HEADLINE:
        assert key in json.loads((ROOT / path).read_text()), (path, key)
