"""Return the explorer's JupyterLab widget: ipywidgets controls around `explore.update`, the latest request winning.

`Explorer(state, controls).widget` is a panel of controls (source case, target prompt, lambda1 and
lambda2, tau, pseudo-inverse, injection, guidance, seed, method, model) above four images (source,
oracle target, edit, difference mask) and the scores. Every change submits the control values to
`Latest`, which computes on one worker thread: requests that arrive while one computes replace each
other (only the newest waits), and a result that is no longer the newest request is dropped, so a
slow inversion never overwrites the answer to a later slider move. The first view is computed
before the widget is returned, so an executed notebook shows it without a running kernel.
"""

from __future__ import annotations

import io
import threading
from dataclasses import fields, replace
from typing import Any, Callable

import numpy as np

from . import explore as ex
from . import models as image_models
from . import shapesbench as sb
from ..core.injection import INJECTIONS
from ..core.pseudo_inverse import PSEUDO_INVERSES
from ..errors import DiceError

SCALE = 12  # screen pixels per image pixel (16 x 16 tokens -> 192 x 192 px)
CHANGED_INSIDE, CHANGED_OUTSIDE = (40, 170, 60), (220, 30, 30)  # difference mask: inside / outside the edit mask


class Latest:
    """Runs `compute(request)` on a worker thread for the newest request only; `publish(generation, result)`
    receives a result (or the exception raised) only while its request is still the newest."""

    def __init__(self, compute: Callable[[Any], Any], publish: Callable[[int, Any], None],
                 on_start: Callable[[int, Any], None] | None = None):
        self.compute, self.publish, self.on_start = compute, publish, on_start or (lambda gen, request: None)
        self.generation = 0  # the newest request's number
        self.dropped = 0  # results computed for a request that a newer one had replaced
        self.skipped = 0  # requests replaced before they started
        self._pending: tuple[int, Any] | None = None
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, request: Any) -> int:
        """Return the request's generation after queueing it in place of any request still waiting."""
        with self._cond:
            self.generation += 1
            if self._pending is not None:
                self.skipped += 1
            self._pending = (self.generation, request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dicelib-explorer", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return self.generation

    def run_now(self, request: Any) -> Any:
        """Return the result of `request` computed on this thread (published as the newest request)."""
        with self._cond:
            self.generation += 1
            gen = self.generation
        self.on_start(gen, request)
        result = self._call(request)
        with self._cond:
            if gen == self.generation:
                self.publish(gen, result)
        return result

    def wait(self, timeout: float = 30.0) -> bool:
        """Return True once no request is waiting or computing (False after `timeout` seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def _call(self, request: Any) -> Any:
        try:
            return self.compute(request)
        except Exception as err:  # noqa: BLE001 - shown in the widget; the worker keeps serving
            return err

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None)
                gen, request = self._pending
                self._pending, self._busy = None, True
            self.on_start(gen, request)
            result = self._call(request)
            with self._cond:
                if gen == self.generation:
                    self.publish(gen, result)
                else:
                    self.dropped += 1
                self._busy = False
                self._cond.notify_all()


def png(tokens: np.ndarray, scale: int = SCALE) -> bytes:
    """Return PNG bytes of palette tokens [16, 16], each pixel a `scale` x `scale` block."""
    return _png(sb.to_rgb(np.asarray(tokens).reshape(sb.SIZE, sb.SIZE)), scale)


def difference_png(view: ex.View, scale: int = SCALE) -> bytes:
    """Return PNG bytes of the difference mask: unchanged pixels white, changed ones green inside the edit mask
    and red outside it (all red-free grey when no oracle target is known)."""
    rgb = np.full((sb.SIZE, sb.SIZE, 3), 255, dtype=np.uint8)
    mask = view.mask
    if mask is None:
        rgb[view.changed] = (90, 90, 90)
    else:
        rgb[view.changed & mask] = CHANGED_INSIDE
        rgb[view.changed & ~mask] = CHANGED_OUTSIDE
    return _png(rgb, scale)


def _png(rgb: np.ndarray, scale: int) -> bytes:
    from PIL import Image

    big = np.repeat(np.repeat(rgb, scale, 0), scale, 1)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    return buf.getvalue()


def _blank(scale: int = SCALE) -> bytes:
    return _png(np.full((sb.SIZE, sb.SIZE, 3), 235, dtype=np.uint8), scale)


def scores_html(view: ex.View, timed: bool = True) -> str:
    """Return the scores of a view as a small HTML table (with the update's time unless `timed` is False)."""
    s = view.scores

    def pct(v: float) -> str:
        return "n/a (no oracle target for this prompt)" if np.isnan(v) else f"{v:.1%}"

    rows = [("edit accuracy (in the edit mask, vs the oracle target)", pct(s["edit_accuracy"])),
            ("preservation (outside the edit mask, vs the source)", pct(s["preservation"])),
            ("parses as the target prompt", "yes" if s["parses_as_target"] else "no"),
            ("pixels changed (outside the edit mask)", f"{s['changed']} ({s['changed_outside']})"),
            ("update", (f"{view.seconds * 1000:.0f} ms, " if timed else "first view, ")
             + ("inverted" if view.inverted else "cached inversion"))]
    body = "".join(f"<tr><td style='padding-right:1em'>{k}</td><td><b>{v}</b></td></tr>" for k, v in rows)
    return f"<table class='dicelib-scores'>{body}</table>"


class Explorer:
    """The interactive explorer: `widget` is the panel to display; `controls()` the values it shows."""

    def __init__(self, state: ex.ExploreState | None = None, controls: ex.Controls | None = None,
                 models: tuple[str, ...] = image_models.IMAGE_MODELS, methods: tuple[str, ...] | None = None):
        import ipywidgets as w

        self.state = state or ex.ExploreState()
        c = (controls or ex.Controls()).check()
        self.view: ex.View | None = None
        style = {"description_width": "8em"}

        def wide() -> Any:  # one Layout per widget: hiding one must not hide the others
            return w.Layout(width="26em")

        def dropdown(options: Any, value: Any, description: str) -> Any:
            return w.Dropdown(options=options, value=value, description=description, style=style, layout=wide())

        def slider(cls: Any, description: str, value: Any, **kw: Any) -> Any:
            return cls(value=value, description=description, continuous_update=True, style=style, layout=wide(), **kw)

        self.inputs = {
            "model": dropdown(list(models), c.model, "model"),
            "method": dropdown(list(methods or ex.METHODS), c.method, "method"),
            "source": dropdown([("ShapesBench case", "bench"), ("drawn from a seed", "seed")], c.source, "source"),
            "split": dropdown(list(self.state.cases["split"].unique()), c.split, "split"),
            "edit_type": dropdown(list(sb.EDIT_TYPES), c.edit_type, "edit type"),
            "index": slider(w.IntSlider, "case index", c.index, min=0, max=self._cases_of(c.split, c.edit_type) - 1),
            "source_seed": w.IntText(value=c.source_seed, description="source seed", style=style, layout=wide()),
            "preset": dropdown(list(ex.PRESETS), c.preset, "target"),
            "prompt": w.Text(value=c.prompt, description="free text", placeholder="a small red circle on a green background",
                             continuous_update=False, style=style, layout=w.Layout(width="40em")),
            "lambda1": slider(w.FloatSlider, "lambda1", c.lambda1, min=0.0, max=1.0, step=0.05, readout_format=".2f"),
            "linked": w.Checkbox(value=c.lambda2 is None, description="lambda2 = 1 - lambda1", indent=False),
            "lambda2": slider(w.FloatSlider, "lambda2", 1 - c.lambda1 if c.lambda2 is None else c.lambda2, min=0.0,
                              max=1.0, step=0.05, readout_format=".2f", disabled=c.lambda2 is None),
            "tau": slider(w.FloatSlider, "tau", c.tau, min=0.05, max=1.0, step=0.05, readout_format=".2f"),
            "pseudo_inverse": dropdown(list(PSEUDO_INVERSES), c.pseudo_inverse, "pseudo-inverse"),
            "injection": dropdown(list(INJECTIONS), c.injection, "injection"),
            "cfg_scale": slider(w.FloatSlider, "guidance", 1.0 if c.cfg_scale is None else c.cfg_scale, min=1.0,
                                max=6.0, step=0.5, readout_format=".1f"),
            "seed": w.IntText(value=c.seed, description="seed", style=style, layout=wide()),
            "steps": slider(w.IntSlider, "steps", c.steps, min=2, max=32),
        }
        self.images = {name: w.Image(value=_blank(), format="png", width=SCALE * sb.SIZE, height=SCALE * sb.SIZE,
                                     layout=w.Layout(border="1px solid #bbb"))
                       for name in ("source", "target", "edit", "changed")}
        self.captions = {name: w.HTML(layout=w.Layout(height="4.2em")) for name in self.images}  # images line up
        self.images["edit"].add_class("dicelib-edit")
        self.scores = w.HTML()
        self.status = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=len(ex.STAGES), description="", layout=w.Layout(width="12em"))
        i = self.inputs
        left = w.VBox([i["model"], i["method"], i["source"], i["split"], i["edit_type"], i["index"], i["source_seed"],
                       i["preset"]])
        right = w.VBox([i["lambda1"], i["linked"], i["lambda2"], i["tau"], i["pseudo_inverse"], i["injection"],
                        i["cfg_scale"], i["seed"], i["steps"]])
        pictures = w.HBox([w.VBox([self.captions[n], self.images[n]], layout=w.Layout(width=f"{SCALE * sb.SIZE + 24}px"))
                           for n in self.images])
        self.widget = w.VBox([w.HBox([left, right]), i["prompt"], w.HBox([self.progress, self.status]), pictures,
                              self.scores])
        self.widget.add_class("dicelib-explorer")
        self.latest = Latest(self._compute, self._publish, self._started)
        self._syncing, self._running = False, 0
        self._sync_visibility()
        self._timed = False  # the first view shows no time: an executed notebook stays the same bytes run after run
        self.latest.run_now(self.controls())
        self._timed = True
        for name, box in i.items():
            box.observe(self._changed, names="value")

    def _cases_of(self, split: str, edit_type: str) -> int:
        cases = self.state.cases
        return int(((cases["split"] == split) & (cases["type"] == edit_type)).sum())

    def controls(self) -> ex.Controls:
        """Return the control values the widgets show."""
        v = {name: box.value for name, box in self.inputs.items()}
        v["lambda2"] = None if v.pop("linked") else v["lambda2"]
        v["cfg_scale"] = None if v["cfg_scale"] == 1.0 else float(v["cfg_scale"])
        return ex.Controls(**{f.name: v[f.name] for f in fields(ex.Controls)})

    def set(self, **values: Any) -> None:
        """Set control values (as a user would; each change submits an update)."""
        for name, value in values.items():
            self.inputs[name].value = value

    def _sync_visibility(self) -> None:
        """Show the controls that apply: case pickers or the source seed, the free-text box, lambda2 when unlinked."""
        i = self.inputs
        bench = i["source"].value == "bench"
        for name in ("split", "index"):
            i[name].layout.display = None if bench else "none"
        i["source_seed"].layout.display = "none" if bench else None
        i["prompt"].layout.display = None if i["preset"].value == ex.FREE_TEXT else "none"
        i["steps"].layout.display = None if i["method"].value == "masked" else "none"
        i["lambda2"].disabled = i["linked"].value
        count = self._cases_of(i["split"].value, i["edit_type"].value)
        if i["index"].max != count - 1:
            i["index"].max = count - 1

    def _changed(self, change: dict) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            if change["owner"] is self.inputs["lambda1"] and self.inputs["linked"].value:
                self.inputs["lambda2"].value = round(1.0 - change["new"], 10)
            if change["owner"] is self.inputs["preset"] and change["new"] == ex.FREE_TEXT and not self.inputs["prompt"].value:
                self.inputs["prompt"].value = self.view.target_prompt if self.view else ""  # a prompt to start editing from
            self._sync_visibility()
        finally:
            self._syncing = False
        try:
            request = self.controls()
        except DiceError as err:
            self._show_error(err)
            return
        self.latest.submit(request)

    def _started(self, gen: int, controls: ex.Controls) -> None:
        self._running = gen
        self.progress.value = 0
        self.status.value = "<i>updating…</i>"

    def _compute(self, controls: ex.Controls) -> ex.View:
        gen = self._running

        def report(stage: str) -> None:
            if gen == self.latest.generation:  # a superseded request shows nothing
                self.progress.value = ex.STAGES.index(stage) + 1
                if stage == "inverting":
                    self.status.value = "<i>inverting the source (new source, tau, method, pseudo-inverse, guidance or seed)…</i>"

        return ex.update(self.state, controls, report)

    def _publish(self, gen: int, result: Any) -> None:
        if isinstance(result, Exception):
            self._show_error(result)
            return
        view: ex.View = result
        self.view = view
        self.images["source"].value = png(view.case.source)
        self.images["target"].value = _blank() if view.target is None else png(view.target)
        self.images["edit"].value = png(view.edit)
        self.images["changed"].value = difference_png(view)
        c = view.controls
        lam2 = 1 - c.lambda1 if c.lambda2 is None else c.lambda2
        captions = {
            "source": f"<b>source</b> ({view.case.id})<br><small>{view.case.source_prompt}</small>",
            "target": ("<b>oracle target</b>" if view.target is not None else "<b>no oracle target</b>")
            + f"<br><small>{view.target_prompt}</small>",
            "edit": f"<b>edit</b><br><small>lambda1 {c.lambda1:.2f}, lambda2 {lam2:.2f}</small>",
            "changed": "<b>difference</b><br><small>changed pixels: <span style='color:#28aa3c'>inside</span> / "
                       "<span style='color:#dc1e1e'>outside</span> the edit mask</small>"}
        for name, text in captions.items():
            self.captions[name].value = f"<div style='line-height:1.3'>{text}</div>"
        self.scores.value = scores_html(view, self._timed)
        self.progress.value = len(ex.STAGES)
        self.status.value = f"done in {view.seconds * 1000:.0f} ms" if self._timed else "ready: move a control"

    def _show_error(self, err: Exception) -> None:
        self.progress.value = 0
        message = str(err).replace("&", "&amp;").replace("<", "&lt;")
        self.status.value = f"<span style='color:#b00'><b>{type(err).__name__}:</b> {message}</span>"


def explorer(state: ex.ExploreState | None = None, controls: ex.Controls | None = None, **values: Any) -> Explorer:
    """Return an Explorer showing `controls` (default Controls()) with `values` in place of their fields."""
    return Explorer(state, replace(controls or ex.Controls(), **values))
