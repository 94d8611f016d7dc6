"""The pipeline's inputs and outputs: what its params accept, the stage contract, how a notebook stage runs, and the writers.

- Params: `SHARED_RULES` says what the settings several stages share accept; each stage declares
  its `StageParams` once next to its code with `stage_params`, and its notebook checks them first.
- Every stage follows one contract (`Stage`, `publish`, `run_stage`): params checked first, outputs
  staged, published together only when the whole stage succeeded, rolled back if publishing fails.
- Notebook stages run through `python -m dicelib.io notebook IN OUT [papermill options]`, which
  runs papermill with the kernel writing into a staging folder; only a run whose every cell
  succeeded moves its files into place, so a failed or interrupted run leaves the last successful
  outputs as they were and its executed notebook goes to `<OUT's folder>/failed/`, headed by a
  cell saying that it failed and why.
- Writers: figures, tables (CSV + Markdown), metrics JSON and plot CSVs, each written to a temp
  file renamed into place. Paths come from dicelib.config (DICELIB_REPORTS redirects them).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterable

from . import config, kernels
from .core.atomic import atomic_write
from .core.injection import INJECTIONS
from .core.masked import NOISE_KINDS
from .core.pseudo_inverse import MIN_MARGIN, PSEUDO_INVERSES
from .errors import DiceError, Relation, Rule, StageParams, choice, integer, number, optional

__all__ = ["LAMBDA", "SHARED_RULES", "NotebookFailed", "Stage", "atomic_write", "jsonable", "publish", "run_notebook",
           "run_stage", "save_figure", "save_metrics", "save_plot_data", "save_table", "stage_params", "typed"]

# --- params -------------------------------------------------------------------------------------

LAMBDA = number(0, 1)  # a latent weight lambda1 (lambda2 = 1 - lambda1 in the pipeline)
SHARED_RULES: dict[str, Rule] = {  # what the pipeline accepts for the settings several stages share
    "seed": integer(0),
    "steps": integer(1),
    "tau": number(0, 1, open_lo=True),
    "cfg_scale": optional(number()),
    "temperature": number(0, open_lo=True),
    "noise": choice(NOISE_KINDS),
    "pseudo_inverse": choice(PSEUDO_INVERSES),
    "margin": number(MIN_MARGIN),
    "injection": choice(INJECTIONS),
    "lambda1": LAMBDA,
    "lambda1_end": LAMBDA,
}


def stage_params(group: str, shared: str, *relations: Relation, **rules: Rule) -> StageParams:
    """Return a stage's params rules: the SHARED_RULES named in `shared` (space-separated) plus `rules`."""
    return StageParams(group, {**{k: SHARED_RULES[k] for k in shared.split()}, **rules}, relations)


# --- notebook stages ----------------------------------------------------------------------------

STAGING = ".staging"  # <REPORTS or ROOT>/.staging/<stage or notebook>/: where a run writes until it succeeds
FAILED = "failed"  # <output folder>/failed/<notebook>.ipynb: the executed notebook of a failed run


class NotebookFailed(RuntimeError):
    """A notebook run failed or was interrupted; nothing was published. `failed` is its executed notebook."""

    def __init__(self, message: str, failed: Path, interrupted: bool):
        super().__init__(message)
        self.failed, self.interrupted = failed, interrupted


def _papermill(cmd: list[str], env: dict[str, str]) -> tuple[int | None, str | None]:
    """Return (papermill's exit status, None), or (None, why) when Ctrl-C or kill stopped this process.

    papermill runs as a child process: on an interrupt it is killed, and its kernel exits within a
    second once its parent is gone (ipykernel's parent poller), so nothing keeps running.
    """
    child = subprocess.Popen(cmd, env=env)
    try:
        return child.wait(), None
    except KeyboardInterrupt as e:
        child.kill()
        child.wait()
        return None, str(e) or "interrupted (Ctrl-C)"


def _failure(nb: Any, status: int | None, interrupt: str | None) -> str | None:
    """Return why a run failed ("Type: message"), or None when papermill succeeded and every code cell ran cleanly."""
    if interrupt is not None:
        return f"KeyboardInterrupt: {interrupt}"
    code = [c for c in nb.cells if c.cell_type == "code"] if nb is not None else []
    for cell in code:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            return f"{errors[0].get('ename')}: {errors[0].get('evalue')} (cell [{cell.execution_count}])"
    if status != 0 or nb is None:
        return f"papermill exited with status {status} (its message is above)"
    never = [i + 1 for i, cell in enumerate(code) if cell.execution_count is None]
    return f"code cells {never} never ran" if never else None


def _write_failed(nb: Any, path: Path, reason: str, output: Path) -> Path:
    """Return `path` after writing `nb` there headed by a cell saying the run FAILED and why."""
    import nbformat

    banner = nbformat.v4.new_markdown_cell(
        f"# This run FAILED\n\n**{reason}**\n\nNothing was published: the outputs of the last successful run "
        f"(`{output}` and every report it writes) are unchanged. This is the failed run's executed notebook, "
        f"kept for diagnosis; it is not a pipeline output.")
    banner.metadata["tags"] = ["dicelib-failed-run"]
    nb.cells.insert(0, banner)
    nb.metadata.setdefault("papermill", {})["exception"] = True
    return atomic_write(path, lambda f: f.write(nbformat.writes(nb)))


def run_notebook(notebook: str | Path, output: str | Path, papermill_args: list[str] | tuple[str, ...] = ()) -> Path:
    """Return `output` after running papermill on `notebook` (with `papermill_args`) and publishing its outputs.

    The kernel runs with DICELIB_REPORTS pointing at a staging folder and its CPU kernels pinned
    (`kernels.notebook_pins`: the same bytes on any x86-64 CPU, docs/reproducibility.md). Only when
    papermill succeeds and every code cell ran without error are the staged files moved under config.REPORTS (each
    with os.replace) and the executed notebook written to `output`, as papermill writes it.
    Otherwise, Ctrl-C and kill included, nothing under config.REPORTS or `output` changes: the
    executed notebook goes to `<output folder>/failed/<name>.ipynb` headed by a cell saying that
    the run failed and why, and NotebookFailed is raised.
    """
    import nbformat

    output = Path(output)
    staging = (config.REPORTS / STAGING / output.stem).resolve()
    staged_reports, staged_nb = staging / "reports", staging / output.name
    shutil.rmtree(staging, ignore_errors=True)  # left by a run killed with SIGKILL
    staged_reports.mkdir(parents=True)
    try:
        status, interrupt = _papermill([sys.executable, "-m", "dicelib.io", "papermill", str(notebook), str(staged_nb),
                                        *papermill_args],
                                       {**kernels.pinned_env(pins=kernels.notebook_pins(notebook)), "DICELIB_REPORTS": str(staged_reports)})
        nb = nbformat.read(staged_nb, as_version=4) if staged_nb.exists() else None
        reason = _failure(nb, status, interrupt)
        if reason is not None:
            failed = _write_failed(nb if nb is not None else nbformat.read(notebook, as_version=4),
                                   output.parent / FAILED / output.name, reason, output)
            raise NotebookFailed(reason, failed, interrupt is not None)
        nb.metadata.papermill["output_path"] = str(output)  # what papermill records when it writes `output` itself
        atomic_write(staged_nb, lambda f: f.write(nbformat.writes(normalised(nb))))
        # all files or none (a failed move puts the previous outputs back); Ctrl-C and kill wait until done
        moves = [(path, config.REPORTS / path.relative_to(staged_reports))
                 for path in sorted(p for p in staged_reports.rglob("*") if p.is_file())]
        published = publish([*moves, (staged_nb, output)], output.stem)[:-1]
        for line in headline(published):
            print(line)
        return output
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # .staging itself, unless another run is using it


def headline(paths: list[Path]) -> list[str]:
    """Return one line per metrics file among `paths`: its path and its numbers ("reports/metrics/x.json: a 0.5, b 1")."""
    lines = []
    for path in paths:
        if path.parent.name == config.METRICS.name and path.suffix == ".json":
            values = json.loads(path.read_text())
            shown = path.relative_to(config.ROOT) if path.is_relative_to(config.ROOT) else path
            lines.append(f"{shown}: " + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in values.items()))
    return lines


ENGINE = "dicelib"  # the papermill engine that notebook stages run with (see papermill_main)


def papermill_main(args: list[str]) -> None:
    """Run papermill's command line on `args` with an engine that keeps a stage's output to what it says.

    Its kernels talk over IPC (over TCP ipykernel warns about unencrypted traffic), are shut down
    without the interrupt jupyter_client sends first (an idle ipykernel logs it as "KeyboardInterrupt
    caught in kernel"), and stream what the cells write to stderr (progress bars, warnings) to this
    process's stderr as they run; the executed notebook drops those streams (`normalised`).
    """
    from jupyter_client.manager import AsyncKernelManager
    from papermill.cli import papermill as cli
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.exceptions import PapermillExecutionError
    from traitlets import default

    class KernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:  # a real interrupt (Ctrl-C, timeout) still reaches the kernel
                await super()._async_interrupt_kernel()

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            kwargs["stderr_file"] = kwargs.get("stderr_file") or sys.stderr
            return super().execute_managed_notebook(nb_man, kernel_name, kernel_manager_class=KernelManager, **kwargs)

    papermill_engines.register(ENGINE, Engine)
    try:
        cli.main(args=[*args, "--engine", ENGINE], prog_name="papermill", standalone_mode=False)
    except PapermillExecutionError as e:  # the failing cell's traceback, not papermill's own
        print(e, file=sys.stderr)
        raise SystemExit(1) from None


RUN_DEPENDENT = ("start_time", "end_time", "duration")  # papermill's timing keys, in the notebook's and each cell's metadata


WIDGET_STATE, WIDGET_VIEW = "application/vnd.jupyter.widget-state+json", "application/vnd.jupyter.widget-view+json"


def _renumber_widgets(nb: Any) -> None:
    """Give the saved ipywidgets models (random 32-hex ids, saved in no fixed order) ids by a fixed order, in place:
    depth first from the displayed widgets through the models each refers to, then the rest by content."""
    saved = nb.metadata.get("widgets", {}).get(WIDGET_STATE)
    if not saved or not saved.get("state"):
        return
    state = saved["state"]
    views = [out["data"][WIDGET_VIEW] for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
             if WIDGET_VIEW in out.get("data", {})]
    order: list[str] = []
    todo = [v.get("model_id") for v in reversed(views)]
    rest = sorted(state, key=lambda k: re.sub(r"[0-9a-f]{32}", "", json.dumps(state[k], sort_keys=True)), reverse=True)
    while todo or rest:
        key = todo.pop() if todo else rest.pop()
        if key in state and key not in order:
            order.append(key)
            todo += reversed(re.findall(r"IPY_MODEL_([0-9a-f]{32})", json.dumps(state[key], sort_keys=True)))
    ids = {old: f"{i:032x}" for i, old in enumerate(order)}
    text = re.sub(r"[0-9a-f]{32}", lambda m: ids.get(m.group(0), m.group(0)), json.dumps({k: state[k] for k in order}))
    saved["state"] = json.loads(text)
    for view in views:
        view["model_id"] = ids.get(view.get("model_id"), view.get("model_id"))


def normalised(nb: Any) -> Any:
    """Return the executed notebook `nb` with what differs between two identical runs taken out, in place.

    Dropped: papermill's timestamps and durations, the kernel's execution timestamps, and stderr
    streams (progress bars, warnings naming install paths); cell ids become their position, and
    ipywidgets model ids their order in the saved widget state; the
    repository's absolute path in the remaining text outputs becomes ".". A rerun on the same
    machine then writes the same bytes, so `git status` stays clean.
    """
    for key in RUN_DEPENDENT:
        nb.metadata.get("papermill", {}).pop(key, None)
    root = str(config.ROOT)
    _renumber_widgets(nb)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
        cell.metadata.pop("execution", None)
        for key in RUN_DEPENDENT:
            cell.metadata.get("papermill", {}).pop(key, None)
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        for out in cell.outputs:
            if "text" in out:
                out["text"] = out["text"].replace(root, ".")
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    out["data"][mime] = value.replace(root, ".")
    return nb


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> None:
    """Run `python -m dicelib.io notebook IN OUT [papermill options]`; on failure exit 1 (130 if interrupted)."""
    p = argparse.ArgumentParser(prog="python -m dicelib.io", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("notebook", help="run a notebook with papermill; publish its outputs only if every cell succeeds")
    nb.add_argument("notebook", help="input notebook")
    nb.add_argument("output", help="executed notebook (its folder is created)")
    nb.add_argument("papermill_args", nargs=argparse.REMAINDER,
                    help="passed to papermill: -p NAME VALUE, -y YAML, --cwd DIR, -k KERNEL, ...")
    pm = sub.add_parser("papermill", help="papermill's command line with the engine notebook stages use (quiet kernels)")
    pm.add_argument("papermill_args", nargs=argparse.REMAINDER, help="papermill's arguments")
    a = p.parse_args(argv)
    if a.command == "papermill":
        papermill_main(a.papermill_args)
        return
    signal.signal(signal.SIGTERM, _interrupt)  # kill: the same clean failure as Ctrl-C
    try:
        run_notebook(a.notebook, a.output, a.papermill_args)
    except NotebookFailed as e:
        print(f"{a.notebook} FAILED: {e}\nThe previous outputs are unchanged; the failed run's executed notebook "
              f"is {e.failed}", file=sys.stderr)
        raise SystemExit(130 if e.interrupted else 1) from None


# --- the stage contract ---------------------------------------------------------------------
# Every pipeline stage, Python and notebook alike: (1) params checked before any work (a
# StageParams), one `Error:` line naming the key, the value and what is allowed; (2) outputs
# written to staging (`Stage.path`), never in place; (3) published together only when the whole
# stage succeeded (`publish`): each previous output is moved aside, each staged one into place; if
# any move fails, every output already moved is put back. Ctrl-C and kill wait until publishing is
# over. dvc.yaml marks every output `persist: true`, so DVC does not delete them before a run.
#
#     with Stage("train-shapes", [CHECKPOINT, METRICS / "train_shapes.json"]) as stage:
#         save(model, stage.path(CHECKPOINT))

OLD = ".staging-old"  # <output's folder>/.staging-old/<stage>/: the previous outputs while publishing


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.move(str(src), str(dst))  # another filesystem: copied, then the source removed


def publish(moves: Iterable[tuple[Path, Path]], tag: str) -> list[Path]:
    """Return the targets after moving each staged path onto its target, all of them or none.

    Each existing target is first moved aside to `<its folder>/.staging-old/<tag>/`; if any move
    fails (a read-only folder, a full disk), the new outputs already in place go back to staging and
    every previous output is moved back, then the error is raised. SIGINT and SIGTERM are held until done.
    """
    moves = [(Path(s), Path(t)) for s, t in moves]
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    done: list[tuple[Path, Path, Path | None, bool]] = []  # (staged, target, previous output moved aside, placed)
    try:
        try:
            for staged, target in moves:
                old = None
                if target.exists() or target.is_symlink():
                    old = target.parent / OLD / tag / target.name
                    old.parent.mkdir(parents=True, exist_ok=True)
                    _remove(old)
                    _move(target, old)
                done.append((staged, target, old, False))
                target.parent.mkdir(parents=True, exist_ok=True)
                _move(staged, target)
                done[-1] = (staged, target, old, True)
        except BaseException:
            for staged, target, old, placed in reversed(done):
                if placed:
                    _move(target, staged)
                if old is not None:
                    _move(old, target)
            raise
        finally:
            for _, target, _, _ in done:
                folder = target.parent / OLD / tag
                shutil.rmtree(folder, ignore_errors=True)
                for empty in (folder.parent,):
                    try:
                        empty.rmdir()
                    except OSError:
                        pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return [t for _, t in moves]


class Stage:
    """One run of a pipeline stage whose outputs are `outputs` (files or folders).

    Inside `with Stage(...) as stage:` write each output to `stage.path(output)` (report writers
    that take a root: `stage.reports`). Leaving the block normally publishes every output together;
    an exception publishes nothing and removes the staged files. An output the run did not write is
    an error (nothing is published).
    """

    def __init__(self, name: str, outputs: Iterable[str | Path]):
        self.name = name
        self.outputs = [Path(p).absolute() for p in outputs]
        self.reports = self._root(config.REPORTS.absolute())
        parents = {str(p.parent) for p in self.outputs}
        self.anchor = Path(os.path.commonpath(sorted(parents))) if parents else Path.cwd()  # outputs elsewhere

    def _root(self, anchor: Path) -> Path:
        return anchor / STAGING / self.name

    def path(self, output: str | Path) -> Path:
        """Return where this run writes `output` (one of the stage's outputs) until it is published."""
        output = Path(output).absolute()
        if output not in self.outputs:
            raise DiceError(f"stage {self.name}: {output} is not one of its outputs {[str(p) for p in self.outputs]}")
        anchor = next(a for a in (config.REPORTS.absolute(), config.ROOT, self.anchor) if output.is_relative_to(a))
        staged = self._root(anchor) / output.relative_to(anchor)
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def _staging_roots(self) -> list[Path]:
        roots = {self._root(config.REPORTS.absolute()), self._root(config.ROOT)}
        roots.add(self._root(self.anchor))
        return sorted(roots)

    def _clean(self) -> None:
        for root in self._staging_roots():
            shutil.rmtree(root, ignore_errors=True)
            try:
                root.parent.rmdir()  # .staging itself, unless another run is using it
            except OSError:
                pass

    def __enter__(self) -> "Stage":
        self._clean()  # left by a run killed with SIGKILL
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                moves = [(self.path(p), p) for p in self.outputs]
                missing = [str(t) for s, t in moves if not (s.exists() or s.is_symlink())]
                if missing:
                    raise DiceError(f"stage {self.name} did not write {missing}; nothing was published")
                publish(moves, self.name)
        finally:
            self._clean()


def typed(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """Return an argparse type giving `kind(text)`, or `text` itself when that fails (the params check then names it)."""
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            return text

    return parse


def run_stage(main: Callable[[], Any]) -> Any:
    """Return main()'s result; a DiceError ends the process with one `Error:` line and exit status 1.

    SIGTERM is turned into KeyboardInterrupt, so a killed stage unwinds (nothing published) like Ctrl-C.
    """
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        return main()
    except DiceError as e:
        print(f"Error: {e} (the previous outputs are unchanged)", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt as e:
        print(f"Error: interrupted ({e or 'Ctrl-C'}); the previous outputs are unchanged.", file=sys.stderr)
        raise SystemExit(130) from None


# --- writers ------------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Return obj with NaN/inf floats as None and numpy/torch scalars as Python numbers (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def save_metrics(metrics: dict, name: str, folder: str | Path | None = None) -> Path:
    """Return the path of reports/metrics/<name>.json (or `folder`/<name>.json) holding `metrics` (NaN written as null)."""
    return atomic_write(Path(folder or config.METRICS) / f"{name}.json",
                        lambda f: f.write(json.dumps(jsonable(metrics), indent=2, sort_keys=True) + "\n"))


def save_table(df: Any, name: str, floatfmt: str = ".6g", folder: str | Path | None = None) -> Path:
    """Return the path of reports/tables/<name>.csv (or in `folder`) after writing it and its Markdown twin <name>.md."""
    folder = Path(folder or config.TABLES)
    atomic_write(folder / f"{name}.md", lambda f: f.write(df.to_markdown(index=False, floatfmt=floatfmt) + "\n"))
    return atomic_write(folder / f"{name}.csv", lambda f: df.to_csv(f, index=False))


def save_plot_data(df: Any, name: str) -> Path:
    """Return the path of reports/plots/<name>.csv (a DVC plot source)."""
    return atomic_write(config.PLOTS / f"{name}.csv", lambda f: df.to_csv(f, index=False))


def save_figure(fig: Any, name: str, dpi: int = 120) -> Path:
    """Return the path of reports/figures/<name>.png after saving the matplotlib figure."""
    return atomic_write(config.FIGURES / f"{name}.png", lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"), mode="wb")


if __name__ == "__main__":
    main()
