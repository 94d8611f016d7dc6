"""The package layout is a contract: `core` knows no model, data set or track; private modules stay private."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from dicelib.config import ROOT

PACKAGE = ROOT / "dicelib"


def _dicelib_imports(path):
    """Yield (line, absolute dotted name) of every dicelib import in `path`, function-level ones included."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    package = package.removesuffix(".__init__")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "dicelib")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
                yield from ((node.lineno, n) for n in names)
            elif (node.module or "").split(".")[0] == "dicelib":
                yield node.lineno, node.module


def _violations(folder, allowed):
    return [f"{p.relative_to(ROOT)}:{line} imports {name}"
            for p in sorted((PACKAGE / folder).rglob("*.py"))
            for line, name in _dicelib_imports(p)
            if not any(name == a or name.startswith(a + ".") for a in allowed)]


def test_core_imports_nothing_outside_core_and_errors():
    assert _violations("core", ("dicelib.core", "dicelib.errors")) == []


def test_the_import_check_catches_a_forbidden_import(tmp_path, monkeypatch):
    """The check above can fail: a core module importing a track is reported."""
    fake = tmp_path / "dicelib" / "core"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from ..image import shapesbench\nfrom . import api\nfrom ..errors import DiceError\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "dicelib")
    assert _violations("core", ("dicelib.core", "dicelib.errors")) == ["dicelib/core/bad.py:1 imports dicelib.image"]


def test_no_module_imports_a_private_module_of_another_package():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = ".".join(path.relative_to(ROOT).parts[:-1])
        for line, name in _dicelib_imports(path):
            parts = name.split(".")
            private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
            if private and ".".join(parts[: private[0]]) != own:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == []


@pytest.mark.parametrize("folder", ["core", "adapters", "image", "text", "piebench", "analysis"])
def test_every_subpackage_says_what_lives_there_and_what_it_may_import(folder):
    doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
    assert doc and "import" in doc, f"dicelib/{folder}/__init__.py needs a docstring saying what it may import"


def test_import_dicelib_is_light_and_adapters_load_on_first_use():
    code = ("import sys, dicelib; heavy = [m for m in ('transformers', 'diffusers', 'matplotlib', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy; dicelib.invert; dicelib.edit; dicelib.reconstruct; dicelib.Inversion; dicelib.DiceError; "
            "assert dicelib.adapters.Amused.__name__ == 'Amused'; assert dicelib.text.__name__ == 'dicelib.text'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
