"""dvc.yaml's stages and what each runs: a notebook (through `python -m dicelib.io notebook`) or a module."""

from __future__ import annotations

import json
import re

import yaml

from dicelib.config import ROOT

RUNNER = "dicelib.io"  # the module that runs notebook stages
NOTEBOOK = re.compile(r"python -m dicelib\.io notebook (notebooks/\S+\.ipynb)")
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def notebook_of(cmd: str) -> str | None:
    """Return the notebook a stage command runs (a path relative to the root), or None."""
    m = NOTEBOOK.search(cmd)
    return m.group(1) if m else None


NOTEBOOK_STAGES = {name: s for name, s in STAGES.items() if notebook_of(s["cmd"])}


def pipeline_values(cmd: str) -> dict:
    """Return {notebook parameter: the value the stage passes from params.yaml}, as papermill reads it."""
    values = {}
    for flag, key, ref in re.findall(r'-(p|y) "?(\w+)[: ]+\$\{([\w.]+)\}', cmd):
        group, name = ref.split(".")
        value = PARAMS[group][name]
        if flag == "y":
            value = yaml.safe_load(value)
        values[key] = None if value == "None" else value  # papermill -p reads the string None as None
    return values


def parameters_cell(path: str) -> dict:
    """Return the cell of notebook `path` (relative to the root) tagged 'parameters'."""
    cells = json.loads((ROOT / path).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{path} needs exactly one cell tagged 'parameters'"
    return tagged[0]


def notebook_values(path: str) -> dict:
    """Return the notebook's own parameter values (its teaching defaults)."""
    namespace: dict = {}
    exec("".join(parameters_cell(path)["source"]), namespace)  # noqa: S102 - our own notebook's literal assignments
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


def outputs(stage: str) -> list[str]:
    """Return every path a stage writes (outs, metrics and plots)."""
    return [path for kind in ("outs", "metrics", "plots") for entry in STAGES[stage].get(kind, [])
            for path in (entry if isinstance(entry, dict) else {entry: {}})]
