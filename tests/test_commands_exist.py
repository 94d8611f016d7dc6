"""Every command the project tells a user to run exists: each `python -m dicelib...` names a runnable module, each
`dicelib <command>` a subcommand of the CLI, each `dvc repro <stage>` a stage, in messages, docstrings and docs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import typer.main
import yaml

from dicelib.cli import app
from dicelib.config import ROOT

SOURCES = sorted(
    [*ROOT.glob("dicelib/**/*.py"), *ROOT.glob("docs/**/*.md"), *ROOT.glob("notebooks/*.ipynb"),
     *ROOT.glob("benchmarks/*.py"), *ROOT.glob("experiments/**/*.yaml"), *ROOT.glob("experiments/**/*.md")]
    + [ROOT / p for p in ("README.md", "Makefile", "dvc.yaml", ".ci/run") if (ROOT / p).is_file()])
MODULE = re.compile(r"python3? -m (dicelib[\w.]*)")
# a command, not prose: quoted or backticked, followed by an option, alone on its line (a code block), or after "run"
COMMAND = re.compile(r"[`'\"]dicelib ([a-z][\w-]*)|\bdicelib ([a-z][\w-]*) -|^[ \t$]*dicelib ([a-z][\w-]*)[ \t]*(?:$|#)"
                     r"|\brun dicelib ([a-z][\w-]*)", re.M)
STAGE = re.compile(r"dvc repro (?:-[-\w]+ )*([a-z][\w-]*)(?![\w/.-])")  # a stage name, not a dvc.yaml path
STAGES = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
SUBCOMMANDS = set(typer.main.get_command(app).commands)


def found(pattern: re.Pattern) -> dict[str, list[str]]:
    """Return {name: [files that mention it]} for every match of `pattern` in SOURCES."""
    out: dict[str, list[str]] = {}
    for path in SOURCES:
        for match in pattern.finditer(path.read_text(encoding="utf-8", errors="replace")):
            name = next(g for g in match.groups() if g)
            out.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return out


def runnable(module: str) -> bool:
    """Return whether `python -m module` runs something: a module with a __main__ block, or a package's __main__."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return runnable(module + ".__main__")
    return spec.origin is not None and '__name__ == "__main__"' in Path(spec.origin).read_text()


MODULES, COMMANDS, REPROS = found(MODULE), found(COMMAND), found(STAGE)


def test_the_scan_finds_the_known_commands():  # the patterns still match what the project writes
    assert {"dicelib.text.train", "dicelib.io", "dicelib.image.benchmark_build"} <= set(MODULES)
    assert {"models", "sweep", "invert", "edit"} <= set(COMMANDS)
    assert {"train-text", "text-data"} <= set(REPROS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_python_dash_m_names_a_runnable_module(module):
    assert runnable(module), f"`python -m {module}` (in {sorted(set(MODULES[module]))}) runs nothing"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_dicelib_command_is_a_cli_subcommand(command):
    assert command in SUBCOMMANDS, (f"`dicelib {command}` (in {sorted(set(COMMANDS[command]))}) is no subcommand; "
                                    f"the CLI has {sorted(SUBCOMMANDS)}")


@pytest.mark.parametrize("stage", sorted(REPROS))
def test_dvc_repro_names_a_stage(stage):
    assert stage in STAGES, f"`dvc repro {stage}` (in {sorted(set(REPROS[stage]))}) is no stage of dvc.yaml"
