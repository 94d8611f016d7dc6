"""Return a table of DVC experiments that fits a terminal: each experiment, the params that differ, the headlines.

    python -m dicelib.exp_table            # `make exp`: the workspace, HEAD and HEAD's experiments
    python -m dicelib.exp_table -A --width 100

`dvc exp show` lists every param and metric (188 columns): in a terminal every cell becomes "…". This view
reads `dvc exp show --json` and keeps three things: the experiment's name (queued or failed ones say so), the
params whose values differ between the rows shown (`editing.steps=12`, wrapped inside their column), and one
column per headline metric in HEADLINE. Nothing is run or changed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from typing import Any

from .config import ROOT

# (header line 1, header line 2, metrics file, key): the numbers a researcher compares across experiments
HEADLINE = (
    ("oracle", "edit", "reports/metrics/editing_oracle.json", "edit_score"),
    ("oracle", "parse", "reports/metrics/editing_oracle.json", "exact_parse"),
    ("learned", "edit", "reports/metrics/editing_learned.json", "edit_score"),
    ("sweep", "edit", "reports/metrics/shapes_sweep.json", "edit_score"),
    ("text", "success", "reports/metrics/text_editing.json", "edit_score"),
    ("text", "mlm acc", "reports/metrics/text_model.json", "masked_acc"),
)
NAME_WIDTH, METRIC_WIDTH, MIN_PARAMS_WIDTH = 24, 8, 24


def _flat(tree: Any, prefix: str = "") -> dict[str, str]:
    """Return a nested params dict as {dotted key: compact value text}."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    text = json.dumps(tree, separators=(",", ":")) if isinstance(tree, list) else str(tree)
    if text.startswith("["):  # lists are strings in params.yaml ("[0.5, 0.7]") and lists in an experiment's
        text = text.replace(", ", ",")
    return {prefix[:-1]: text}


def _row(name: str, entry: dict, state: str | None = None) -> dict[str, Any]:
    """Return one table row: name, flat params (every params file; params.yaml's keys unprefixed) and metrics."""
    data = entry.get("data") or {}
    params: dict[str, str] = {}
    for path, content in (data.get("params") or {}).items():
        flat = _flat((content or {}).get("data") or {})
        params.update(flat if path == "params.yaml" else {f"{path}:{k}": v for k, v in flat.items()})
    metrics = {path: (content or {}).get("data") or {} for path, content in (data.get("metrics") or {}).items()}
    label = name + (f" ({state})" if state and state not in ("success", "done") else "")
    if entry.get("error"):
        label += " (error)"
    return {"name": label, "params": params, "metrics": metrics}


def rows(show: list[dict]) -> list[dict[str, Any]]:
    """Return the rows of `dvc exp show --json` output: each baseline (workspace, commits), then its experiments."""
    out = []
    for base in show:
        rev = str(base.get("rev", ""))
        out.append(_row(base.get("name") or (rev if rev == "workspace" else rev[:7]), base))
        for exp in base.get("experiments") or []:
            revs = exp.get("revs") or [{}]
            first = revs[0]
            name = exp.get("name") or first.get("name") or str(first.get("rev", ""))[:7]
            out.append(_row("  " + name, first, (exp.get("executor") or {}).get("state")))
    return out


def changed(table: list[dict[str, Any]]) -> list[str]:
    """Return the param keys whose values are not the same in every row (absent counts as a value)."""
    keys = sorted({k for r in table for k in r["params"]})
    return [k for k in keys if len({r["params"].get(k) for r in table}) > 1]


def _metric(row: dict[str, Any], path: str, key: str) -> str:
    value = row["metrics"].get(path, {}).get(key)
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.4g}"


def render(table: list[dict[str, Any]], width: int = 120) -> str:
    """Return the table as text no wider than `width`: name | changed params (wrapped) | one column per HEADLINE."""
    params_width = width - NAME_WIDTH - len(HEADLINE) * (METRIC_WIDTH + 1) - 2
    if params_width < MIN_PARAMS_WIDTH:
        from .errors import DiceError

        raise DiceError(f"width {width} is too narrow; give --width >= {width - params_width + MIN_PARAMS_WIDTH}")
    keys = changed(table)

    def line(name: str, params: str, cells: list[str]) -> str:
        return (f"{name[:NAME_WIDTH]:<{NAME_WIDTH}} {params:<{params_width}} "
                + " ".join(f"{c:>{METRIC_WIDTH}}" for c in cells)).rstrip()

    out = [line("experiment", "params changed" if keys else "params changed (none)", [h[0] for h in HEADLINE]),
           line("", "", [h[1] for h in HEADLINE]),
           "-" * width]
    for r in table:
        text = " ".join(f"{k}={r['params'][k]}" for k in keys if k in r["params"])
        wrapped = textwrap.wrap(text, params_width, break_on_hyphens=False) or [""]
        out.append(line(r["name"], wrapped[0], [_metric(r, path, key) for _, _, path, key in HEADLINE]))
        out += [line("", more, []) for more in wrapped[1:]]
    return "\n".join(out)


def show_json(all_commits: bool = False) -> list[dict]:
    """Return `dvc exp show --json` of the repository (all commits with -A)."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["-A"] if all_commits else [])
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        from .errors import DiceError

        raise DiceError(f"`dvc exp show --json` failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> None:
    """Print the experiments table (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m dicelib.exp_table", description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=120, help="widest line in characters (default 120)")
    parser.add_argument("-A", "--all-commits", action="store_true", help="every commit's experiments, not HEAD's")
    args = parser.parse_args(argv)
    from .errors import DiceError

    try:
        print(render(rows(show_json(args.all_commits)), args.width))
    except DiceError as err:
        print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
