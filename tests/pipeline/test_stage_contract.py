"""One stage contract for every stage: params checked first, outputs staged, published all together or not at all.

Python stages (data, train-shapes, shapes-sweep, text-data, train-text, train-text-baseline) run
here at tiny sizes on temp outputs; notebook stages share `publish` through `run_notebook`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from dicelib import DiceError, io
from dicelib.config import ROOT
from dicelib.image import benchmark_build, shapes_sweep, train_shapes
from dicelib.text import sentiment_data
from dicelib.text import train as text_train

from .stages import STAGES


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fail_moves_onto(monkeypatch, name: str) -> None:
    """Make every move onto a file called `name` fail, as on a read-only folder."""
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == name:
            raise PermissionError(13, "Permission denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)


def test_publish_moves_all_or_puts_every_previous_output_back(tmp_path, monkeypatch):
    old = {"a.txt": b"old a", "sub/b.txt": b"old b", "c.txt": b"old c"}
    for rel, data in old.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    staged = tmp_path / "staged"
    moves = []
    for rel in old:
        (staged / rel).parent.mkdir(parents=True, exist_ok=True)
        (staged / rel).write_bytes(b"new " + rel.encode())
        moves.append((staged / rel, tmp_path / rel))
    _fail_moves_onto(monkeypatch, "c.txt")
    with pytest.raises(PermissionError):
        io.publish(moves, "t")
    assert {rel: (tmp_path / rel).read_bytes() for rel in old} == old
    assert not list(tmp_path.rglob(io.OLD))
    monkeypatch.undo()
    assert io.publish(moves, "t") == [t for _, t in moves]
    assert {rel: (tmp_path / rel).read_bytes() for rel in old} == {rel: b"new " + rel.encode() for rel in old}
    assert not list(tmp_path.rglob(io.OLD))


def test_a_notebook_run_that_fails_while_publishing_keeps_every_previous_output(tmp_path, monkeypatch):
    """A read-only reports/tables: the new figure must not end up beside the old table and notebook."""
    reports, out = tmp_path / "reports", tmp_path / "out" / "nb.ipynb"
    monkeypatch.setattr(io.config, "REPORTS", reports)
    old = {reports / "figures/f.png": b"old figure", reports / "tables/t.csv": b"old table", out: b"old notebook"}
    for path, data in old.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", execution_count=1)],
                                  metadata={"papermill": {}})

    def papermill(cmd, env):  # what a successful kernel leaves in staging
        staged = Path(env["DICELIB_REPORTS"])
        for rel in ("figures/f.png", "tables/t.csv"):
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            (staged / rel).write_bytes(b"new")
        nbformat.write(nb, cmd[5])
        return 0, None

    monkeypatch.setattr(io, "_papermill", papermill)
    _fail_moves_onto(monkeypatch, "t.csv")
    with pytest.raises(PermissionError):
        io.run_notebook(tmp_path / "in.ipynb", out)
    assert {p: p.read_bytes() for p in old} == old
    monkeypatch.undo()
    monkeypatch.setattr(io.config, "REPORTS", reports)
    monkeypatch.setattr(io, "_papermill", papermill)
    io.run_notebook(tmp_path / "in.ipynb", out)
    assert (reports / "figures/f.png").read_bytes() == (reports / "tables/t.csv").read_bytes() == b"new"
    assert not (reports / io.STAGING).exists()


def test_a_stage_publishes_only_when_its_block_succeeds(tmp_path):
    a, b = tmp_path / "x" / "a.txt", tmp_path / "y" / "b"
    a.parent.mkdir()
    a.write_text("old")
    with pytest.raises(RuntimeError):
        with io.Stage("demo", [a, b]) as stage:
            stage.path(a).write_text("new")
            raise RuntimeError("the work failed")
    assert a.read_text() == "old" and not b.exists()
    with pytest.raises(DiceError, match="did not write"):
        with io.Stage("demo", [a, b]) as stage:
            stage.path(a).write_text("new")
    assert a.read_text() == "old"
    with io.Stage("demo", [a, b]) as stage:
        stage.path(a).write_text("new")
        stage.path(b).mkdir()
        (stage.path(b) / "f").write_text("in a folder")
    assert a.read_text() == "new" and (b / "f").read_text() == "in a folder"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b", "f", "x", "y"]  # no staging left


def _shapes_outputs(folder: Path) -> list[str]:
    return ["--out", str(folder / "shapes.pt"), "--metrics", str(folder / "m.json"), "--table", str(folder / "t.csv"),
            "--plot", str(folder / "p.csv"), "--quality-plot", str(folder / "q.csv"), "--figure", str(folder / "f.png")]


TINY = ["--steps", "2", "--batch-size", "2", "--dim", "8", "--heads", "2", "--depth", "1", "--pixel-dim", "8",
        "--conv-depth", "0", "--eval-every", "0", "--eval-steps", "2", "--eval-prompts", "2", "--eval-scenes", "2",
        "--curve-prompts", "2"]


@pytest.mark.parametrize("args, message", [
    (["--steps", "-1"], "train_shapes: parameter steps = -1 is not allowed; expected an int >= 1"),
    (["--steps", "two"], "parameter steps = 'two' is not allowed"),
    (["--soft-targets", "maybe"], "parameter soft_targets = 'maybe' is not allowed; expected true or false"),
    (["--kind-probs", "0,0,0"], "parameter kind_probs = (0.0, 0.0, 0.0) is not allowed"),
    (["--dim", "10", "--heads", "4"], "dim = 10, heads = 4 are not allowed together"),
])
def test_train_shapes_rejects_bad_params_before_any_work_and_keeps_its_outputs(tmp_path, args, message):
    (tmp_path / "shapes.pt").write_bytes(b"the trained checkpoint")
    with pytest.raises(DiceError, match=re.escape(message)):
        train_shapes.main([*TINY, *args, *_shapes_outputs(tmp_path)])
    assert _snapshot(tmp_path) == {"shapes.pt": b"the trained checkpoint"}


def test_train_shapes_at_tiny_size_publishes_every_output_together(tmp_path):
    (tmp_path / "shapes.pt").write_bytes(b"the previous checkpoint")
    report = train_shapes.main([*TINY, *_shapes_outputs(tmp_path)])
    assert report["steps"] == 2
    assert sorted(_snapshot(tmp_path)) == ["f.png", "m.json", "p.csv", "shapes.pt", "t.csv", "t.md", "train_shapes_loss.png"]
    assert (tmp_path / "shapes.pt").read_bytes() != b"the previous checkpoint"
    assert not (tmp_path / io.STAGING).exists()


def _params_with(tmp_path: Path, group: str, **values) -> str:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[group].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return str(tmp_path / "params.yaml")


@pytest.mark.parametrize("baseline, group, key, bad", [
    (True, "text_baseline", "steps", 0), (False, "text_model", "steps", -5), (False, "text_model", "lr", "fast"),
    (True, "text_baseline", "num_heads", 3),
])
def test_text_training_rejects_bad_params_before_any_work(tmp_path, monkeypatch, baseline, group, key, bad):
    monkeypatch.setattr(text_train, "train_lm", lambda *a, **k: pytest.fail("trained with a bad parameter"))
    with pytest.raises(DiceError, match=f"^{group}: parameter.* {key} = {bad!r}"):
        text_train.main([*(["--baseline"] if baseline else []), "--params", _params_with(tmp_path, group, **{key: bad})])


def test_the_data_stages_reject_bad_params_before_any_work(tmp_path):
    with pytest.raises(DiceError, match="cases_per_type = 2, val_per_type = 5, test_per_type = 20"):
        benchmark_build.main(["--out", str(tmp_path / "sb"), "--cases-per-type", "2", "--val-per-type", "5"])
    with pytest.raises(DiceError, match="^text_data: parameter test_fraction = 1.5 is not allowed"):
        sentiment_data.main(["--params", _params_with(tmp_path, "text_data", test_fraction=1.5)])
    assert not (tmp_path / "sb").exists()


def test_the_data_stage_replaces_its_folder_as_a_whole(tmp_path):
    out = tmp_path / "sb"
    out.mkdir()
    (out / "stale.png").write_bytes(b"from an older run")
    benchmark_build.main(["--out", str(out), "--cases-per-type", "1", "--val-per-type", "0", "--test-per-type", "1",
                          "--previews", "0"])
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "grids.npz"]


def test_shapes_sweep_rejects_a_lambda_outside_0_1_and_keeps_its_outputs(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "shapes_sweep.csv").write_text("previous\n")
    with pytest.raises(DiceError, match=r"^shapes_sweep: parameter lambdas = \[1.5\] is not allowed; expected a non-empty list, each a number in \[0, 1\]"):
        shapes_sweep.main(["--lambdas", "1.5", "--reports", str(tmp_path)])
    with pytest.raises(DiceError, match="^shapes_sweep: parameter threads = 0 is not allowed"):
        shapes_sweep.main(["--threads", "0", "--reports", str(tmp_path)])
    assert _snapshot(tmp_path) == {"tables/shapes_sweep.csv": b"previous\n"}


def test_every_output_of_every_stage_persists():
    """DVC deletes an output that is not `persist: true` before running its stage, even when the run then fails."""
    loose = [(name, path) for name, stage in STAGES.items() for kind in ("outs", "metrics", "plots")
             for entry in stage.get(kind, []) for path, opts in entry.items() if not (opts or {}).get("persist")]
    assert loose == []
