"""The results report: `reports/index.html` and `reports/RESULTS.md`, written from the pipeline's own files.

Everything comes from what the pipeline wrote, so no number is copied by hand: `dvc.yaml` says which
stage makes which figure, table and metrics file (in its order, new stages and figures included),
`dvc.lock` gives the params each stage ran with and the hashes of the data and models it read,
the metrics JSON and the tables give the numbers, and `docs/captions.yaml` gives each figure and
table its caption (a figure missing there gets a default caption naming its file and stage).
Run `python -m dicelib.report` (the `report` stage).
"""

from __future__ import annotations

import argparse
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .core.atomic import atomic_write

CAPTIONS = "docs/captions.yaml"  # figure / table / metrics captions, relative to the root
INLINE_ROWS = 60  # tables longer than this are linked, not inlined
INPUT_PREFIXES = ("data/", "models/")  # deps whose hashes identify a result's data and models
SELF = "report"  # this stage's name in dvc.yaml (left out of the report)


@dataclass
class Stage:
    """One dvc.yaml stage as the report shows it."""

    name: str
    notebook: str | None = None  # the source notebook (notebooks/*.ipynb), if a notebook stage
    executed: str | None = None  # its executed copy (reports/notebooks/*.ipynb)
    command: str = ""  # the module the stage runs (`python -m …`), for stages without a notebook
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # Markdown tables (reports/tables/*.md)
    metrics: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # dotted key -> value, from dvc.lock
    inputs: dict[str, str] = field(default_factory=dict)  # data/model path -> md5, from dvc.lock
    hashes: dict[str, str] = field(default_factory=dict)  # output path -> md5, from dvc.lock


def _paths(entries: list | None) -> list[str]:
    """Return the paths of a dvc.yaml outs/deps/metrics list (items are strings or {path: options})."""
    return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or []]


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return nested params as {dotted.key: value}."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _module(cmd: str) -> str:
    """Return `python -m X` of a stage's command (without the environment settings before it), or the command."""
    words = " ".join(str(cmd).split()).split(" ")
    if "-m" in words and words.index("-m") + 1 < len(words):
        return "python -m " + words[words.index("-m") + 1]
    return " ".join(words)


def stages(root: Path) -> list[Stage]:
    """Return the pipeline's stages in dvc.yaml order, with their outputs and what dvc.lock recorded of their last run."""
    import yaml

    spec = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    lock_file = root / "dvc.lock"
    lock = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {}) if lock_file.exists() else {}
    result = []
    for name, body in spec.items():
        if name == SELF:
            continue
        deps, outs = _paths(body.get("deps")), _paths(body.get("outs"))
        ran = lock.get(name, {})
        stage = Stage(
            name=name,
            notebook=next((d for d in deps if d.endswith(".ipynb")), None),
            executed=next((o for o in outs if o.endswith(".ipynb")), None),
            command=_module(body.get("cmd", "")),
            figures=[o for o in outs if o.endswith(".png")],
            tables=[o for o in outs if o.startswith("reports/tables/") and o.endswith(".md")],
            metrics=_paths(body.get("metrics")),
            params=_flatten((ran.get("params") or {}).get("params.yaml", {})),
            inputs={d["path"]: d.get("md5", "") for d in ran.get("deps", []) if d["path"].startswith(INPUT_PREFIXES)},
            hashes={o["path"]: o.get("md5", "") for o in ran.get("outs", [])},
        )
        result.append(stage)
    return result


def captions(root: Path) -> dict[str, dict[str, str]]:
    """Return {"figures": {stem: caption}, "tables": {...}, "metrics": {...}} from docs/captions.yaml (empty if absent)."""
    import yaml

    path = root / CAPTIONS
    data = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    return {kind: {str(k): str(v) for k, v in (data.get(kind) or {}).items()} for kind in ("figures", "tables", "metrics")}


def caption(kind: str, path: str, stage: Stage, texts: dict[str, dict[str, str]]) -> str:
    """Return the caption of a figure/table/metrics file: from the captions table, else a default naming the file and stage."""
    stem = Path(path).stem
    return texts.get(kind, {}).get(stem) or f"{stem} (made by the `{stage.name}` stage; no caption yet in {CAPTIONS})"


def metrics_rows(root: Path, stage_list: list[Stage]) -> list[tuple[str, str, dict[str, Any]]]:
    """Return (stage, metrics path, {key: value}) for every metrics file that exists, in pipeline order."""
    rows = []
    for stage in stage_list:
        for path in stage.metrics:
            if (root / path).exists():
                rows.append((stage.name, path, _flatten(json.loads((root / path).read_text()))))
    return rows


def _short(md5: str) -> str:
    return md5.replace(".dir", "")[:12] + (" (folder)" if md5.endswith(".dir") else "")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _link(path: str, root: Path, out: Path) -> str:
    """Return `path` (relative to the root) as a link target relative to the report's folder `out`."""
    return Path(os.path.relpath(root / path, out)).as_posix()


def _made_by(stage: Stage, root: Path, out: Path, md: bool) -> str:
    """Return the line saying which notebook (source and executed) or command made a stage's outputs."""
    if stage.notebook:
        parts = [(stage.notebook, "notebook"), (stage.executed, "executed")] if stage.executed else [(stage.notebook, "notebook")]
        links = [f"[`{p}`]({_link(p, root, out)})" if md else
                 f'<a href="{html.escape(_link(p, root, out))}"><code>{html.escape(p)}</code></a>' for p, _ in parts]
        return ("Made by notebook " + links[0] + (f" (executed: {links[1]})" if len(links) > 1 else ""))
    return f"Made by `{stage.command}`" if md else f"Made by <code>{html.escape(stage.command)}</code>"


def render_markdown(root: Path, out: Path, stage_list: list[Stage], texts: dict[str, dict[str, str]]) -> str:
    """Return RESULTS.md: headline metrics, then per stage its provenance, figures with captions and tables."""
    lines = ["# Results", "",
             "Written by the `report` stage (`python -m dicelib.report`) from the pipeline's outputs, "
             "`dvc.yaml` and `dvc.lock`: every number below is read from `reports/`; edit nothing here by hand. "
             "The same report with the tables as HTML: [index.html](index.html).", "",
             "## Headline metrics", "", "| stage | file | metric | value |", "|---|---|---|---|"]
    for stage_name, path, values in metrics_rows(root, stage_list):
        for key, value in values.items():
            lines.append(f"| {stage_name} | [`{Path(path).name}`]({_link(path, root, out)}) | `{key}` | {_fmt(value)} |")
    for stage in stage_list:
        if not (stage.figures or stage.tables or stage.metrics):
            continue
        lines += ["", f"## Stage `{stage.name}`", "", _made_by(stage, root, out, md=True) + "."]
        if stage.params:
            lines.append("Params: " + ", ".join(f"`{k}` = `{v}`" for k, v in stage.params.items()) + ".")
        if stage.inputs:
            lines.append("Data and models (md5 from `dvc.lock`): " +
                         ", ".join(f"`{p}` {_short(h)}" for p, h in stage.inputs.items()) + ".")
        for fig in stage.figures:
            lines += ["", f"![{Path(fig).stem}]({_link(fig, root, out)})", "",
                      f"*{caption('figures', fig, stage, texts)}* (`{Path(fig).name}`, md5 {_short(stage.hashes.get(fig, '?'))})"]
        for table in stage.tables:
            lines += ["", f"### {caption('tables', table, stage, texts)}", "",
                      f"[`{table}`]({_link(table, root, out)}) · [CSV]({_link(table[:-3] + '.csv', root, out)})"]
            text = (root / table).read_text().rstrip() if (root / table).exists() else ""
            if text and text.count("\n") < INLINE_ROWS:
                lines += ["", text]
            elif text:
                lines += ["", f"({text.count(chr(10)) - 1} rows: open the file.)"]
    return "\n".join(lines) + "\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}
figure{margin:1.5em 0;border-top:1px solid #ddd;padding-top:1em}figure img{max-width:100%;height:auto}
figcaption{font-size:0.95em;color:#333;margin-top:.4em}table{border-collapse:collapse;font-size:0.92em;margin:.5em 0}
table{display:block;overflow-x:auto;max-width:100%}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}code{font-size:1em}
.prov{font-size:0.9em;color:#444}details{margin:.6em 0}summary{cursor:pointer;font-weight:600}nav a{margin-right:.8em}"""


def _html_table(path: Path) -> str:
    """Return the CSV twin of a Markdown table as an HTML table (or a note when it is too long or missing)."""
    import pandas as pd

    csv = path.with_suffix(".csv")
    if not csv.exists():
        return "<p>(no CSV twin)</p>"
    df = pd.read_csv(csv)
    if len(df) > INLINE_ROWS * 4:
        return f"<p>({len(df)} rows: open the file.)</p>"
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0)


def render_html(root: Path, out: Path, stage_list: list[Stage], texts: dict[str, dict[str, str]]) -> str:
    """Return index.html: the same content as RESULTS.md, with every table as HTML (long ones folded)."""
    esc = html.escape
    shown = [s for s in stage_list if s.figures or s.tables or s.metrics]
    body = ["<h1>dicelib results</h1>",
            "<p>Written by the <code>report</code> stage (<code>python -m dicelib.report</code>) from the pipeline's outputs, "
            '<code>dvc.yaml</code> and <code>dvc.lock</code>; the same in Markdown: <a href="RESULTS.md">RESULTS.md</a>. '
            f'Back to the <a href="{esc(_link("README.md", root, out))}">README</a>.</p>',
            "<nav>" + "".join(f'<a href="#{esc(s.name)}">{esc(s.name)}</a>' for s in shown) + "</nav>",
            "<h2>Headline metrics</h2><table><tr><th>stage</th><th>file</th><th>metric</th><th>value</th></tr>"]
    for stage_name, path, values in metrics_rows(root, stage_list):
        for key, value in values.items():
            body.append(f'<tr><td>{esc(stage_name)}</td><td><a href="{esc(_link(path, root, out))}">{esc(Path(path).name)}</a></td>'
                        f"<td><code>{esc(key)}</code></td><td>{esc(_fmt(value))}</td></tr>")
    body.append("</table>")
    for stage in shown:
        body += [f'<h2 id="{esc(stage.name)}">Stage <code>{esc(stage.name)}</code></h2>',
                 f'<p class="prov">{_made_by(stage, root, out, md=False)}.</p>']
        if stage.params:
            body.append('<p class="prov">Params: ' + ", ".join(f"<code>{esc(k)}</code> = <code>{esc(str(v))}</code>"
                                                             for k, v in stage.params.items()) + ".</p>")
        if stage.inputs:
            body.append('<p class="prov">Data and models (md5 from <code>dvc.lock</code>): ' +
                        ", ".join(f"<code>{esc(p)}</code> {esc(_short(h))}" for p, h in stage.inputs.items()) + ".</p>")
        for fig in stage.figures:
            body.append(f'<figure><img src="{esc(_link(fig, root, out))}" alt="{esc(Path(fig).stem)}">'
                        f"<figcaption>{esc(caption('figures', fig, stage, texts))} "
                        f"<span class=\"prov\">(<code>{esc(Path(fig).name)}</code>, md5 {esc(_short(stage.hashes.get(fig, '?')))})</span>"
                        "</figcaption></figure>")
        for table in stage.tables:
            small = (root / table).exists() and (root / table).read_text().count("\n") < INLINE_ROWS
            body.append(f"<details{' open' if small else ''}><summary>{esc(caption('tables', table, stage, texts))}</summary>"
                        f'<p class="prov"><a href="{esc(_link(table, root, out))}">{esc(table)}</a> · '
                        f'<a href="{esc(_link(table[:-3] + ".csv", root, out))}">CSV</a></p>{_html_table(root / table)}</details>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dicelib results</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def build(root: str | Path | None = None, out: str | Path | None = None) -> tuple[Path, Path]:
    """Return the paths of index.html and RESULTS.md after writing them into `out` (default reports/) from `root`'s pipeline."""
    root = Path(root or config.ROOT)
    out = Path(out or root / "reports")
    stage_list, texts = stages(root), captions(root)
    page = atomic_write(out / "index.html", lambda f: f.write(render_html(root, out, stage_list, texts)))
    md = atomic_write(out / "RESULTS.md", lambda f: f.write(render_markdown(root, out, stage_list, texts)))
    return page, md


def main(argv: list[str] | None = None) -> None:
    """Run `python -m dicelib.report [--out FOLDER]`: write the report and print its two paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for index.html and RESULTS.md (default: reports/)")
    for path in build(out=parser.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
