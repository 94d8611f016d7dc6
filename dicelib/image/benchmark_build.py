"""Return ShapesBench's edit-case table and token grids; write and read them under data/shapesbench/.

Layout written by the `data` stage (`python -m dicelib.image.benchmark_build`), all small and committed:

- `cases.csv`: one row per edit case: `id`, `type` (one of six edit types), `split`
  (`train` / `val` / `test`, fixed per type by position), `source_prompt`, `target_prompt`,
  `source`, `target`, `mask` (the source render, the oracle target render and the exact edit
  mask as 256-character strings of colour ids / 0-1 flags, row-major 16x16), `mask_pixels`,
  `source_objects`.
- `grids.npz`: the same grids as arrays (`source`, `target` uint8 [N, 16, 16], `mask` bool).
- `previews/*.png`: source | oracle target | mask for the first cases of each type.

Held-out prompts: every prompt of a `val` or `test` case. The `shapes` model never trains on an
image with one of these prompts, so prompt-following and editing are measured on unseen prompts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from . import shapesbench as sb
from ..config import DATA
from .. import kernels
from ..errors import DiceError, Relation, StageParams, check_choice, choice, integer

BENCH_DIR = DATA / "shapesbench"
SPLITS = ("train", "val", "test")
SPLIT, PER_TYPE = choice(SPLITS), integer(1)  # params rules of the notebooks that pick cases by split and type


def _grid_string(a: np.ndarray) -> str:
    return "".join(str(int(v)) for v in np.asarray(a).ravel())


def split_of(j: int, val_per_type: int, test_per_type: int) -> str:
    """Return the split of the j-th case of a type: the first `test_per_type` test, then val, then train."""
    return "test" if j < test_per_type else "val" if j < test_per_type + val_per_type else "train"


def build_cases(cases_per_type: int = 60, seed: int = 0, val_per_type: int = 10,
                test_per_type: int = 20) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Return (case table, {"source", "target", "mask"} grids [N, 16, 16]), deterministic by seed."""
    if cases_per_type < val_per_type + test_per_type or min(val_per_type, test_per_type) < 0:
        raise DiceError(f"cases_per_type={cases_per_type} must be >= val_per_type + test_per_type "
                        f"= {val_per_type + test_per_type} (both >= 0)")
    rng = np.random.default_rng(seed)
    rows, src, tgt, seen = [], [], [], set()
    for edit_type in sb.EDIT_TYPES:
        j = 0
        while j < cases_per_type:
            source, target = sb.random_case(rng, edit_type)
            a, b = sb.render(source), sb.render(target)
            key = (a.tobytes(), b.tobytes())
            if key in seen:  # identical cases would weigh twice in every mean
                continue
            seen.add(key)
            rows.append({"id": f"{edit_type}-{j:03d}", "type": edit_type,
                         "split": split_of(j, val_per_type, test_per_type),
                         "source_prompt": sb.prompt(source), "target_prompt": sb.prompt(target),
                         "source": _grid_string(a), "target": _grid_string(b), "mask": _grid_string(a != b),
                         "mask_pixels": int((a != b).sum()), "source_objects": len(source.objects)})
            src.append(a)
            tgt.append(b)
            j += 1
    source, target = np.stack(src), np.stack(tgt)
    return pd.DataFrame(rows), {"source": source, "target": target, "mask": source != target}


def heldout_prompts(cases: pd.DataFrame) -> set[str]:
    """Return every prompt of a val or test case (the model never trains on these)."""
    held = cases[cases["split"] != "train"]
    return set(held["source_prompt"]) | set(held["target_prompt"])


def save(cases: pd.DataFrame, grids: dict[str, np.ndarray], out: Path = BENCH_DIR, previews: int = 2) -> Path:
    """Return `out` after writing cases.csv, grids.npz and preview PNGs there (each atomically)."""
    from ..io import atomic_write
    from .plotting import case_figure, save_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "cases.csv", lambda h: cases.to_csv(h, index=False))
    atomic_write(out / "grids.npz", lambda h: np.savez_compressed(h, **grids), "wb")
    for edit_type in sb.EDIT_TYPES:
        idx = np.flatnonzero(cases["type"].to_numpy() == edit_type)[:previews]
        if len(idx):
            fig = case_figure(cases.iloc[idx], grids["source"][idx], {"oracle target": grids["target"][idx]},
                              grids["mask"][idx])
            save_png(fig, out / "previews" / f"{edit_type}.png")
    return out


def load(path: Path = BENCH_DIR, split: str | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Return (cases, grids) read from `path`, optionally only one split (rows re-indexed from 0)."""
    path = Path(path)
    if not (path / "cases.csv").exists() or not (path / "grids.npz").exists():
        raise DiceError(f"no ShapesBench at {path}; run `dvc repro data` (or `python -m dicelib.image.benchmark_build`)")
    cases = pd.read_csv(path / "cases.csv")
    with np.load(path / "grids.npz") as z:
        grids = {k: z[k] for k in ("source", "target", "mask")}
    if split is not None:
        check_choice("split", split, SPLITS)
        keep = (cases["split"] == split).to_numpy()
        cases = cases[keep].reset_index(drop=True)
        grids = {k: v[keep] for k, v in grids.items()}
    return cases, grids


def subset(cases: pd.DataFrame, grids: dict[str, np.ndarray], per_type: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Return the first `per_type` cases of every edit type (a balanced subset, rows re-indexed).

    Asking for more cases than a type has is a DiceError saying how many there are (never silently fewer).
    """
    have = int(cases.groupby("type", sort=False).size().min()) if len(cases) else 0
    if per_type > have:
        raise DiceError(f"per_type = {per_type!r} is more than the {have} case(s) per edit type here; "
                        f"expected at most {have}")
    keep = cases.groupby("type", sort=False).cumcount().to_numpy() < per_type
    return cases[keep].reset_index(drop=True), {k: v[keep] for k, v in grids.items()}


def select(cases: pd.DataFrame, grids: dict[str, np.ndarray], ids: list[str] | str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Return the cases with the given id(s), in that order (rows re-indexed)."""
    ids = [ids] if isinstance(ids, str) else list(ids)
    index = {v: i for i, v in enumerate(cases["id"])}
    missing = [i for i in ids if i not in index]
    if missing:
        raise DiceError(f"unknown case id(s) {missing}; ids look like {list(cases['id'][:3])}")
    rows = np.array([index[i] for i in ids])
    return cases.iloc[rows].reset_index(drop=True), {k: v[rows] for k, v in grids.items()}


PARAMS = StageParams(  # the shapes_data group of params.yaml (and base.seed), checked before any work
    "shapes_data", {"seed": integer(0), "cases_per_type": integer(1), "val_per_type": integer(0),
                    "test_per_type": integer(0), "previews": integer(0)},
    (Relation(("cases_per_type", "val_per_type", "test_per_type"), "cases_per_type >= val_per_type + test_per_type",
              lambda c, v, t: c >= v + t),))


def main(argv: list[str] | None = None) -> None:
    """Build ShapesBench and write it under data/shapesbench (the `data` DVC stage)."""
    from ..io import Stage, typed

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", type=Path, default=BENCH_DIR)
    p.add_argument("--seed", type=typed(int), default=0)
    p.add_argument("--cases-per-type", type=typed(int), default=60)
    p.add_argument("--val-per-type", type=typed(int), default=10)
    p.add_argument("--test-per-type", type=typed(int), default=20)
    p.add_argument("--previews", type=typed(int), default=3)
    a = p.parse_args(argv)
    PARAMS.check(**{k: getattr(a, k) for k in PARAMS.rules})
    with Stage("data", [a.out]) as stage:
        cases, grids = build_cases(a.cases_per_type, a.seed, a.val_per_type, a.test_per_type)
        save(cases, grids, stage.path(a.out), a.previews)
    counts = cases.groupby(["type", "split"]).size().unstack(fill_value=0)
    print(f"wrote {len(cases)} cases to {a.out}\n{counts}")


if __name__ == "__main__":
    from ..io import run_stage

    kernels.pin_process()  # same bytes on any x86-64 CPU (docs/reproducibility.md)
    run_stage(main)
