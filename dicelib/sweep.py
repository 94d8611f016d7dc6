"""Return sweeps run on this machine or on a Ray cluster: work units, one record per unit, resume, merge.

A sweep is a `Task` (a benchmark with a model, its cases and a grid of settings) cut into work
units: one unit is one case with the grid points that share an inversion, so a worker inverts the
case once and edits all those settings as one edit grid (`dicelib.edit_grid`). Units run through
one function (`compute`) on a worker that loaded the model once (`Task.setup`). Engines:

- `local` (the default): in this process, one unit after another;
- `ray`: one Ray actor per worker (`num_gpus=1` each when the cluster has GPUs, one CPU otherwise);
  `address="auto"` (or `ray://…`, `host:port`) joins a running cluster, no address starts a local one.
  Ray is the optional extra `dicelib[cluster]`.

Faults: each unit's result is written atomically as its own JSON record, named by a hash of the
unit (task, case, settings, seed, and a fingerprint of the model's weights, the data and dicelib's
code), under the sweep's record folder as soon as it finishes, so a rerun skips every finished
unit and a killed worker, node or driver loses only the units in flight. A worker that dies is
restarted and its unit retried (`max_retries`); a unit that fails for a reason of its own (a bad
image, a model error) is recorded as failed with its message and the sweep goes on (a rerun
tries it again). A record read back is validated (`record_problem`): a bad one is computed again with a
warning naming its file; a NaN or missing score (`Task.scores`) fails its unit. A lock (`<records>/.lock`)
stops two runs computing into one folder; a sweep without units, or a Ray address that does not answer
within `CONNECT_TIMEOUT` seconds, is a DiceError before anything is written. `merge` reads the records in the sweep's order and lets the task write its
tables and metrics, byte for byte what a serial run writes: each unit seeds its generators from
the sweep seed and its case id (`unit_seed`), never from worker order or from which units ran.
May import `core`, `errors` and `io`; tasks live with their benchmark (`image`, `piebench`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Protocol, Sequence

from .core.atomic import atomic_write
from .errors import DiceError, check_choice

ENGINES = ("local", "ray")
MAX_RETRIES = 3  # restarts of a dead worker and retries of its unit (Ray)
CONNECT_TIMEOUT = 10.0  # seconds to reach a Ray cluster's address before giving up with an error
LOCK = ".lock"  # <records>/.lock: held by the run computing into that folder
RECORD_VERSION = 1
PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Unit:
    """One work unit: a case and the indices of the grid points it edits (they share one inversion)."""

    case: str
    points: tuple[int, ...]

    def key(self) -> str:
        return f"{self.case}@{','.join(map(str, self.points))}"


class Task(Protocol):
    """What a benchmark gives a sweep. Instances are small and picklable; `setup` does the heavy loading."""

    name: str  # names the record folder and the outputs

    def cases(self) -> list[str]: ...  # case ids, in the order the outputs list them

    def grid(self) -> list[dict[str, Any]]: ...  # JSON-able settings points

    def inversion_key(self, point: dict[str, Any]) -> Hashable: ...  # points with equal keys share an inversion

    def fingerprint(self) -> dict[str, Any]: ...  # what results depend on beyond the unit (weights, data)

    def setup(self) -> Any: ...  # on each worker, once: load the model and the data

    def run(self, state: Any, case: str, points: list[int], seed: int) -> list[dict[str, Any]]: ...  # rows

    def merge(self, rows: list[dict[str, Any]], failed: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
        ...  # write the outputs from every done unit's rows (sweep order); `meta`: `Task.meta` of a worker


def _meta(task: Task, state: Any) -> dict[str, Any]:
    """Return what a worker says about its setup (e.g. which metrics lack weights): `task.meta(state)`, if any."""
    return task.meta(state) if hasattr(task, "meta") else {}


@dataclass
class SweepRun:
    """What one `run_sweep` call did: units computed here (done or failed) and units skipped as already done."""

    units: int
    computed: list[Unit] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[Unit, str]] = field(default_factory=list)
    seconds: float = 0.0  # wall clock of the units' part (engine start excluded)
    compute_seconds: float = 0.0  # sum of the computed units' own times on their workers


def units(task: Task) -> list[Unit]:
    """Return the task's work units: for each case, one unit per group of grid points that share an inversion."""
    groups: dict[Hashable, list[int]] = {}
    for i, point in enumerate(task.grid()):
        groups.setdefault(task.inversion_key(point), []).append(i)
    return [Unit(case, tuple(points)) for case in task.cases() for points in groups.values()]


def unit_seed(seed: int, case: str) -> int:
    """Return the seed of a unit's generators: a hash of the sweep seed and the case id (< 2**62)."""
    digest = hashlib.sha256(f"{int(seed)}/{case}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


def code_fingerprint() -> str:
    """Return a hash of dicelib's source files (records computed by other code are not reused)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def file_fingerprint(*paths: str | Path) -> str:
    """Return a hash of the given files' bytes (a model checkpoint, a data set)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


def _dumps(obj: Any, **kwargs: Any) -> str:
    """JSON with inf/NaN kept (Python reads them back) and numpy/torch scalars as numbers."""
    return json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o), **kwargs)


class Records:
    """The record folder of one sweep: `<folder>/<hash of the unit>.json`, one per finished unit."""

    def __init__(self, task: Task, seed: int, folder: str | Path):
        self.task, self.seed, self.folder = task, int(seed), Path(folder)
        self.grid = task.grid()
        self.identity = {"task": task.name, "seed": self.seed, "code": code_fingerprint(), **task.fingerprint()}

    def path(self, unit: Unit) -> Path:
        ident = {**self.identity, "case": unit.case, "points": [self.grid[i] for i in unit.points]}
        return self.folder / f"{hashlib.sha256(_dumps(ident, sort_keys=True).encode()).hexdigest()[:20]}.json"

    def read(self, unit: Unit) -> dict[str, Any] | None:
        """Return the unit's record, or None when there is none or it is not valid (a warning names the file)."""
        path = self.path(unit)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            return self._invalid(path, f"not readable JSON ({err})")
        why = record_problem(record, unit, getattr(self.task, "scores", ()))
        return record if why is None else self._invalid(path, why)

    def _invalid(self, path: Path, why: str) -> None:
        warnings.warn(f"sweep record {path} is not valid ({why}); its unit is computed again", stacklevel=3)
        return None

    def done(self, unit: Unit) -> bool:
        record = self.read(unit)
        return record is not None and record["status"] == "done"

    def write(self, unit: Unit, record: dict[str, Any]) -> Path:
        return atomic_write(self.path(unit), lambda f: f.write(_dumps(record, indent=1) + "\n"))


def record_problem(record: Any, unit: Unit, scores: Sequence[str] = ()) -> str | None:
    """Return what is wrong with a unit's record (read back from disk), or None when it is valid.

    Valid: a JSON object for this unit, status 'done' with a list of row objects (each score in
    `scores` a finite number) and no error, or status 'failed' with an error message.
    """
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not an object"
    if record.get("unit") != {"case": unit.case, "points": list(unit.points)}:
        return f"unit {record.get('unit')!r} is not {unit.key()}"
    status, rows = record.get("status"), record.get("rows")
    if status == "failed":
        return None if isinstance(record.get("error"), str) else "status 'failed' without an error message"
    if status != "done":
        return f"status {status!r}; expected 'done' or 'failed'"
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return "rows are not a list of objects"
    for row in rows:
        bad = [k for k in scores if not _finite(row.get(k))]
        if bad:
            return f"score {bad[0]} = {row.get(bad[0])!r} is not a finite number"
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

def compute(task: Task, state: Any, unit: Unit, seed: int) -> dict[str, Any]:
    """Return a unit's record: its rows, or 'failed' with the message when the unit itself fails."""
    start = time.perf_counter()
    record: dict[str, Any] = {"version": RECORD_VERSION, "task": task.name,
                              "unit": {"case": unit.case, "points": list(unit.points)}}
    try:
        rows = task.run(state, unit.case, list(unit.points), unit_seed(seed, unit.case))
        bad = [(k, r.get(k)) for r in rows for k in getattr(task, "scores", ()) if not _finite(r.get(k))]
        if bad:  # a NaN or missing score would silently move the merged best point
            raise ValueError(f"score {bad[0][0]} = {bad[0][1]!r} is not a finite number")
        record.update(status="done", rows=rows, error=None, meta=_meta(task, state))
    except Exception as err:  # noqa: BLE001 - a unit's own failure is data; the sweep goes on
        record.update(status="failed", rows=[], error=f"{type(err).__name__}: {err}")
    record["seconds"] = round(time.perf_counter() - start, 4)  # not merged: outputs stay byte-identical
    return record


def _set_threads(threads: int | None) -> int | None:
    """Set torch's CPU threads (same count on every engine: same float reductions); return the old count."""
    if threads is None:
        return None
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    return old


def run_sweep(task: Task, seed: int, records: str | Path, engine: str = "local", address: str | None = None,
              workers: int | None = None, max_retries: int = MAX_RETRIES, threads: int | None = 1,
              progress: bool = True, on_record: Callable[[Unit, dict], None] | None = None) -> SweepRun:
    """Return what ran after computing every unit of `task` that has no 'done' record in `records`.

    `engine` "local" runs in this process; "ray" on a Ray cluster (`address` "auto" or a cluster
    address joins one; None starts a local one of `workers` CPUs, or uses the one this process
    already started). `workers`: Ray actors (default: the cluster's GPUs, else its CPUs).
    `threads`: torch CPU threads per worker (None: leave them). `on_record(unit, record)` is
    called after each record is written.
    """
    check_choice("engine", engine, ENGINES)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise DiceError(f"threads = {threads!r} is not allowed; expected an int >= 1 (or None: torch's default)")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise DiceError(f"workers = {workers!r} is not allowed; expected an int >= 1 (or None: one per GPU or CPU)")
    if int(max_retries) < 0:
        raise DiceError(f"max_retries = {max_retries!r} is not allowed; expected an int >= 0")
    store = Records(task, seed, records)
    todo = _units(task)
    with _locked(store.folder):
        return _run_units(task, seed, store, todo, engine, address, workers, max_retries, threads, progress, on_record)


def _units(task: Task) -> list[Unit]:
    """Return the task's units; a DiceError when there are none (nothing would be merged but an empty table)."""
    todo = units(task)
    if not todo:
        raise DiceError(f"{task.name} has no work: {len(task.cases())} case(s) x {len(task.grid())} grid point(s); "
                        "check its data and selection")
    return todo


class _locked:
    """Hold `<folder>/.lock` while a run computes into `folder`; a second run there gets a DiceError."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __enter__(self) -> None:
        import fcntl

        check_folder("records folder", self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.folder / LOCK, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "another process"
            self.handle.close()
            raise DiceError(f"another sweep ({owner}) is running in {self.folder}; wait for it, or give another "
                            "records folder (a rerun afterwards resumes from its records)") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self.handle.flush()

    def __exit__(self, *exc: Any) -> None:
        self.handle.close()  # releases the lock


def _run_units(task: Task, seed: int, store: Records, todo: list[Unit], engine: str, address: str | None,
               workers: int | None, max_retries: int, threads: int | None, progress: bool,
               on_record: Callable[[Unit, dict], None] | None) -> SweepRun:
    pending = [u for u in todo if not store.done(u)]
    result = SweepRun(units=len(todo), skipped=len(todo) - len(pending))
    if not pending:
        return result
    from tqdm import tqdm

    bar = tqdm(total=len(todo), initial=result.skipped, desc=f"{task.name} units ({engine})", disable=not progress)

    def finished(unit: Unit, record: dict[str, Any]) -> None:
        store.write(unit, record)
        result.computed.append(unit)
        result.compute_seconds += record.get("seconds", 0.0)
        if record["status"] != "done":
            result.failed.append((unit, record["error"]))
            bar.write(f"unit {unit.key()} failed: {record['error']}")
        bar.update(1)
        if on_record is not None:
            on_record(unit, record)

    try:
        if engine == "local":
            _run_local(task, seed, pending, threads, finished, result)
        else:
            _run_ray(task, seed, pending, address, workers, max_retries, threads, finished, result)
    finally:
        bar.close()
    return result


def _run_local(task: Task, seed: int, pending: list[Unit], threads: int | None, finished: Callable,
               result: SweepRun) -> None:
    old = _set_threads(threads)
    try:
        state = task.setup()
        start = time.perf_counter()
        for unit in pending:
            finished(unit, compute(task, state, unit, seed))
        result.seconds = time.perf_counter() - start
    finally:
        _set_threads(old)


def import_ray() -> Any:
    """Return the ray module, or a DiceError saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise DiceError("engine 'ray' needs Ray, which is not installed; install the cluster extra: "
                        "pip install 'dicelib[cluster]' (or pip install 'ray[default]')") from err
    return ray


class _Worker:
    """A Ray actor: the task's state loaded once, then one unit per call."""

    def __init__(self, task: Task, seed: int, threads: int | None):
        self.task, self.seed, self.threads, self.state = task, seed, threads, None

    def ready(self) -> bool:
        if self.state is None:
            _set_threads(self.threads)
            self.state = self.task.setup()
        return True

    def run(self, unit: Unit) -> dict[str, Any]:
        self.ready()
        return compute(self.task, self.state, unit, self.seed)


def _run_ray(task: Task, seed: int, pending: list[Unit], address: str | None, workers: int | None,
             max_retries: int, threads: int | None, finished: Callable, result: SweepRun) -> None:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address:
            _reachable(address)
            try:
                ray.init(address=address)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise DiceError(f"cannot join the Ray cluster at address {address!r} ({_cause(err)}); start one with "
                                "`ray start --head` (then address 'auto'), or give no address for a local one") from None
        else:
            ray.init(num_cpus=workers, include_dashboard=False)
        started = True
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        n = int(workers or gpus or resources.get("CPU", 1))
        per_worker = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        actor = ray.remote(max_restarts=max_retries, max_task_retries=max_retries, **per_worker)(_Worker)
        new = lambda: actor.remote(task, seed, threads)  # noqa: E731
        pool = [new() for _ in range(min(n, len(pending)))]
        try:
            ray.get([w.ready.remote() for w in pool])  # a missing model fails here, once, before any unit
        except Exception as err:
            raise DiceError(f"the sweep's workers could not load {task.name}: {_cause(err)}") from None
        queue, running = deque(pending), {}

        def submit(w: Any) -> None:
            unit = queue.popleft()
            running[w.run.remote(unit)] = (w, unit)

        start = time.perf_counter()
        for w in pool:
            submit(w)
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            w, unit = running.pop(ref)
            try:
                record = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:  # retries used up
                record = {"version": RECORD_VERSION, "task": task.name, "seconds": 0.0, "rows": [],
                          "unit": {"case": unit.case, "points": list(unit.points)}, "status": "failed",
                          "error": f"worker lost after {max_retries} retries: {_cause(err)}"}
                ray.kill(w, no_restart=True)
                w = new()
            finished(unit, record)
            if queue:
                submit(w)
        result.seconds = time.perf_counter() - start
    finally:
        if started:
            ray.shutdown()


def _reachable(address: str, timeout: float | None = None) -> None:
    """Raise a DiceError unless `host:port` (or ray://host:port) accepts a connection within `timeout` seconds.

    Ray itself retries an unreachable address for minutes; "auto" (find the running cluster) is left to Ray.
    """
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    hostport = address.removeprefix("ray://")
    if address == "auto" or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise DiceError(f"cannot reach the Ray cluster at address {address!r} within {timeout:g} s "
                        f"({getattr(err, 'strerror', None) or err}); start one with `ray start --head` "
                        "(then address 'auto'), or give no address for a local one") from None


def _cause(err: BaseException) -> str:
    text = str(getattr(err, "cause", None) or err).strip().splitlines()
    return text[-1] if text else type(err).__name__


def merge(task: Task, seed: int, records: str | Path) -> dict[str, Any]:
    """Return the task's metrics after it wrote its outputs from the records of every unit (in sweep order).

    A unit without a record raises a DiceError (run the sweep first); failed units are passed to
    the task (`failed`: case, points and message) and left out of the rows.
    """
    store = Records(task, seed, records)
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    missing, meta = [], {}
    for unit in _units(task):
        record = store.read(unit)
        if record is None:
            missing.append(unit.key())
        elif record["status"] == "done":
            rows.extend(record["rows"])
            meta = meta or record.get("meta") or {}
        else:
            failed.append({**record["unit"], "error": record["error"]})
    if missing:
        raise DiceError(f"{len(missing)} unit(s) of {task.name} have no record in {records} (first: {missing[0]}); "
                        "run the sweep first")
    return task.merge(rows, failed, meta)


def sweep(task: Task, seed: int, records: str | Path, **kwargs: Any) -> tuple[dict[str, Any], SweepRun]:
    """Return (merged metrics, what ran): `run_sweep` then `merge`."""
    ran = run_sweep(task, seed, records, **kwargs)
    return merge(task, seed, records), ran


def parse_floats(text: str | Sequence[float], name: str) -> tuple[float, ...]:
    """Return numbers from '0.5,0.7', '[0.5, 0.7]' or a list; a DiceError names `name` otherwise."""
    if not isinstance(text, str):
        return tuple(float(v) for v in text)
    try:
        values = tuple(float(v) for v in text.strip().strip("[]").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise DiceError(f"{name} = {text!r} is not allowed; expected comma-separated numbers such as 0.5,0.7")
    return values


def check_folder(option: str, folder: str | Path | None) -> Path | None:
    """Return `folder` as a Path if it is, or can become, a folder; a DiceError names a file in its way."""
    if folder is None:
        return None
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise DiceError(f"{option} {str(folder)!r} cannot be a folder: {str(part)!r} is a file")
    return folder


def summary_line(ran: SweepRun) -> str:
    """Return one line saying what a run did (units computed, skipped, failed; units per second)."""
    rate = f", {len(ran.computed) / ran.seconds:.2f} units/s" if ran.computed and ran.seconds > 0 else ""
    return (f"{ran.units} units: {len(ran.computed)} computed, {ran.skipped} already done, "
            f"{len(ran.failed)} failed{rate}")


def add_engine_arguments(parser: Any, engine: str = "local", address: str | None = None, threads: int | None = 1) -> None:
    """Add --engine, --address, --workers, --max-retries, --threads, --records to an argparse parser."""
    none = lambda s: None if s in ("", "None", "null", "none") else s  # noqa: E731
    parser.add_argument("--engine", default=engine, help="local (this process) | ray")
    parser.add_argument("--address", type=none, default=address,
                        help="ray: 'auto' joins the running cluster; none starts a local one")
    parser.add_argument("--workers", type=lambda s: None if none(s) is None else int(s), default=None,
                        help="ray: actors (default: one per GPU of the cluster, else per CPU)")
    parser.add_argument("--max-retries", type=int, default=MAX_RETRIES, help="ray: restarts of a dead worker")
    parser.add_argument("--threads", type=lambda s: None if none(s) is None else int(s), default=threads,
                        help="torch CPU threads per worker (the same on every engine: same results; none: torch's)")

