"""The README is a short front door, and every link in it and in docs/ leads somewhere that exists."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from dicelib.config import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
MAX_README_LINES = 250


def _local_targets(page: Path) -> list[str]:
    """Return the relative link targets of a Markdown page, without #anchors, outside code blocks."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    targets = [t.split("#")[0] for t in LINK.findall(text)]
    return [t for t in targets if t and "://" not in t and not t.startswith("mailto:")]


def test_readme_is_a_short_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES, f"README.md has {len(text.splitlines())} lines"
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads[:4] == ["## Quick start", "## Edit your own image or sentence", "## Learn the method",
                         "## Reproduce the paper"], heads
    assert "make repro" in text and "make test" in text and "notebooks/00-walkthrough.ipynb" in text
    assert "reports/RESULTS.md" in text


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_local_link_resolves(page):
    missing = [t for t in _local_targets(page) if not (page.parent / unquote(t)).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_make_targets_the_readme_names_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`make ([a-z-]+)", README.read_text())):
        assert re.search(rf"^{target}:", makefile, re.M), f"README names `make {target}`, the Makefile has none"
