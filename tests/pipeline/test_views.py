"""What a researcher reads through DVC: small flat metrics files and plots that name their axes."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
import yaml

from dicelib.config import ROOT

from .stages import STAGES

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PLOT_STAGES = tuple(STAGES)  # stage-level plot declarations checked here
WIDTH = 120  # a terminal


def _paths(entries):
    return [path for entry in entries for path in (entry if isinstance(entry, dict) else {entry: {}})]


METRICS = [path for name in STAGES for path in _paths(STAGES[name].get("metrics", []))]  # every stage's


@pytest.mark.parametrize("path", METRICS)
def test_metrics_file_is_small_and_flat(path):
    data = json.loads((ROOT / path).read_text())
    assert isinstance(data, dict) and 1 <= len(data) <= 4, f"{path}: a few headline numbers, got {list(data)}"
    nested = {k: v for k, v in data.items() if isinstance(v, (dict, list))}
    assert not nested, f"{path} nests {list(nested)}: breakdowns belong in reports/tables"


def test_metrics_show_fits_a_terminal():
    out = subprocess.run(["dvc", "metrics", "show"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 1 + len(METRICS) and "edit_score" in lines[0]
    assert max(map(len, lines)) <= WIDTH, out.stdout


def _plots():
    """Return (name, properties, {csv path: [y fields]}) for every top-level plot and the checked stage-level ones."""
    found = []
    for entry in DVC_YAML.get("plots", []):
        (name, props), = entry.items()
        ys = props.get("y", {})
        found.append((name, props, {f: [v] if isinstance(v, str) else list(v) for f, v in ys.items()}))
    for stage in PLOT_STAGES:
        for entry in STAGES[stage].get("plots", []):
            (path, props), = (entry if isinstance(entry, dict) else {entry: {}}).items()
            found.append((path, props, {path: [props.get("y")]}))
    return found


PLOTS = _plots()


def test_every_notebook_plot_csv_is_declared_as_an_output():
    declared = {p for name in STAGES for kind in ("outs", "plots") for p in _paths(STAGES[name].get(kind, []))}
    for name, _, files in PLOTS:
        for path in files:
            assert path in declared or any(path.startswith(d.rstrip("/") + "/") for d in declared), \
                f"plot {name} reads {path}, which no stage writes"


@pytest.mark.parametrize("name,props,files", PLOTS, ids=[p[0] for p in PLOTS])
def test_plot_names_x_y_template_title_and_its_csv_has_them(name, props, files):
    assert props.get("title") and props.get("template") and props.get("x"), f"plot {name}: {props}"
    assert files and all(fields and all(fields) for fields in files.values()), f"plot {name} names no y"
    for path, fields in files.items():
        with open(ROOT / path, newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows, f"{path} is empty"
        missing = {props["x"], *fields} - set(rows[0])
        assert not missing, f"plot {name}: {path} has no column {sorted(missing)}"
        numeric = [props["x"], *fields] if props["template"] == "linear" else [props["x"]]
        for field in numeric:  # linear plots: numbers on both axes; bars: numbers along x
            [float(r[field]) for r in rows]


def test_plots_show_draws_every_plot_offline(tmp_path):
    """`dvc plots show` uses the project's page (.dvc/plots/offline.html: vega, vega-lite and vega-embed inline), so
    every plot draws in a browser that has no network."""
    import re

    from tests.browser import headless

    out = subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    page = (tmp_path / "index.html").read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page), "the page loads a file: it would need it beside it"
    divs = len(re.findall(r"vegaEmbed\('#", page))
    assert divs == len(PLOTS)
    dom = headless((tmp_path / "index.html").as_uri(), "--dump-dom")
    assert dom.count("<canvas") == divs, f"{dom.count('<canvas')} of {divs} plots drawn"


def test_the_offline_page_is_the_vendored_files_inline():
    """offline.html is what `make plots-template` writes from template.html and .dvc/plots/vendor."""
    plots = ROOT / ".dvc" / "plots"
    page = (plots / "offline.html").read_text()
    want = (plots / "template.html").read_text()
    for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js"):
        want = want.replace(f"/*{name}*/", (plots / "vendor" / name).read_text())
    assert page == want and "{plot_divs}" in page and "{scripts}" not in page  # no CDN scripts injected
