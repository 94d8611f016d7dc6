"""Return what the interactive explorer (notebook 07) shows: one plain update, control values -> images + scores.

`update(state, controls)` is the whole explorer without widgets: it picks the source case (a
ShapesBench case by split, edit type and index, or a case drawn from a seed), resolves the target
prompt (the case's own target, one edit type applied to the source scene, or free text checked
against the ShapesBench grammar), inverts the source under its prompt and edits it under the
target prompt with the control values, and returns the source, the oracle target, the edit, the
changed pixels and the exact scores. `explore_ui` is the thin ipywidgets layer on top of it.

The inversion is the slow part and depends only on the model, the source, tau, the method, the
pseudo-inverse, the steps, guidance and the seed (`inversion_key`); `ExploreState` caches it, so
moving lambda1, lambda2, the injection or the target prompt costs one edit (about 0.1 s on the
oracle on a CPU). Guidance belongs to the inversion as in DICE: latents are recorded under the
same guided predictions that editing then corrects.

The figures and tables of notebook 07 (a static snapshot over lambda1, the answers to its three
guided questions) are built from the same calls.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from . import benchmark_build
from . import metrics as im
from . import models as image_models
from . import shapesbench as sb
from ..core.api import edit_grid, invert
from ..core.injection import INJECTIONS
from ..core.pseudo_inverse import PSEUDO_INVERSES
from ..core.settings import resolve_lambda2
from ..errors import DiceError, check_choice, choice, integer, is_int, is_number, list_of
from ..io import LAMBDA, SHARED_RULES, stage_params
from .plotting import lambda_edits_figure, plt
from .shapes_model import encode

# invert's method-specific options per DICE method; a method the core gains (next-scale) is one more entry
METHODS: dict[str, dict[str, Any]] = {"masked": {"noise": "mask"}, "multinomial": {}}
SOURCES = ("bench", "seed")  # a ShapesBench case, or a case drawn from a seed by the benchmark's generator
CASE, FREE_TEXT = "case target", "free text"
PRESETS = (CASE, *sb.EDIT_TYPES, FREE_TEXT)  # target prompt: the case's own, an edit type applied to the source, typed
STAGES = ("source", "inverting", "editing", "scoring")  # what `report` is told, in order

PARAMS = stage_params(  # notebook 07
    "explore", "seed steps tau cfg_scale pseudo_inverse injection lambda1", tau_lambda1=LAMBDA, model=image_models.MODEL,
    method=choice(tuple(METHODS)), split=benchmark_build.SPLIT, edit_type=choice(sb.EDIT_TYPES), index=integer(0),
    snapshot_lambdas=list_of(LAMBDA), lambdas=list_of(LAMBDA), taus=list_of(SHARED_RULES["tau"]),
    models=list_of(image_models.MODEL), pseudo_inverses=list_of(SHARED_RULES["pseudo_inverse"]),
    recon_edit_type=choice(sb.EDIT_TYPES), recon_index=integer(0))


@dataclass(frozen=True)
class Controls:
    """The explorer's control values (one field per widget)."""

    model: str = "shapes-oracle"  # one of models.IMAGE_MODELS
    source: str = "bench"  # "bench": ShapesBench case (split, edit_type, index); "seed": a case drawn from source_seed
    split: str = "test"
    edit_type: str = "change_shape"  # the case's edit type (bench) or the drawn case's (seed)
    index: int = 14  # the case's position among its split's cases of that type
    source_seed: int = 0
    preset: str = CASE  # one of PRESETS
    prompt: str = ""  # the target prompt when preset is FREE_TEXT
    lambda1: float = 0.7  # weight of the latents
    lambda2: float | None = None  # weight of fresh noise; None: linked, 1 - lambda1
    tau: float = 0.8  # editing starts at masking level tau
    pseudo_inverse: str = "lai"
    injection: str = "add"
    cfg_scale: float | None = None  # guidance (None or 1: off)
    seed: int = 0  # inversion noise (seed) and editing noise (seed + 1)
    method: str = "masked"  # one of METHODS
    steps: int = 16  # masked-method steps (multinomial: the model's T)

    def check(self) -> Controls:
        """Return these controls after checking every value (a DiceError names the bad one and what is allowed)."""
        check_choice("model", self.model, image_models.IMAGE_MODELS)
        check_choice("source", self.source, SOURCES)
        check_choice("split", self.split, benchmark_build.SPLITS)
        check_choice("edit type", self.edit_type, sb.EDIT_TYPES)
        check_choice("target preset", self.preset, PRESETS)
        check_choice("method", self.method, tuple(METHODS))
        check_choice("pseudo_inverse", self.pseudo_inverse, PSEUDO_INVERSES)
        check_choice("injection", self.injection, INJECTIONS)
        for name in ("index", "source_seed", "seed"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise DiceError(f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        if not is_int(self.steps) or self.steps < 1:
            raise DiceError(f"steps must be an int >= 1, got {self.steps!r}")
        for name, lo in (("lambda1", 0.0), ("lambda2", 0.0)):
            v = getattr(self, name)
            if not (v is None and name == "lambda2") and not (is_number(v) and lo <= v <= 1):
                raise DiceError(f"{name} must be a number in [0, 1]{' or None (1 - lambda1)' if name == 'lambda2' else ''}, "
                                f"got {v!r}")
        if not (is_number(self.tau) and 0 < self.tau <= 1):
            raise DiceError(f"tau must be a number in (0, 1], got {self.tau!r}")
        if self.cfg_scale is not None and not (is_number(self.cfg_scale) and self.cfg_scale >= 1):
            raise DiceError(f"guidance must be None (off) or a number >= 1, got {self.cfg_scale!r}")
        return self


@dataclass(frozen=True)
class Case:
    """A source scene with its oracle target: tokens [16, 16], prompts and the scene the source shows."""

    id: str
    source: np.ndarray
    source_prompt: str
    scene: sb.Scene
    target: np.ndarray | None = None  # the case's own oracle target (None: no target known)
    target_prompt: str | None = None


@dataclass
class View:
    """What the explorer shows after one update."""

    case: Case
    target_prompt: str
    target: np.ndarray | None  # the oracle target of this prompt ([16, 16]; None when free text names none)
    edit: np.ndarray  # [16, 16]
    scores: dict[str, float]  # edit_accuracy, preservation, parses_as_target, changed, changed_outside
    inverted: bool  # whether this update ran the inversion (False: the cached one was reused)
    seconds: float
    controls: Controls

    @property
    def mask(self) -> np.ndarray | None:
        """Return the edit mask: pixels where the oracle target differs from the source (None without a target)."""
        return None if self.target is None else self.target != self.case.source

    @property
    def changed(self) -> np.ndarray:
        """Return the difference mask: pixels where the edit differs from the source [16, 16] bool."""
        return self.edit != self.case.source


def check_prompt(text: str) -> str:
    """Return `text` with single spaces after checking it is a ShapesBench prompt of a possible scene (else DiceError)."""
    if not isinstance(text, str) or not text.strip():
        raise DiceError("the target prompt is empty; write e.g. 'a small red circle on a green background'")
    text = " ".join(text.split())
    bg, objs = sb.parse_prompt(text)
    colours = [c for _, c, _ in objs]
    if len(objs) > 2:
        raise DiceError(f"prompt {text!r} names {len(objs)} objects; a ShapesBench scene has 1 or 2")
    if bg in colours or len(set(colours)) != len(colours):
        raise DiceError(f"prompt {text!r} describes no ShapesBench scene: objects need distinct colours, "
                        f"none the background's ({bg})")
    return text


def scene_of(tokens: np.ndarray) -> sb.Scene:
    """Return the scene a rendered ShapesBench image shows (its exact parse)."""
    seen = sb.parse(tokens)
    if seen["unknown"] or not 1 <= len(seen["objects"]) <= 2:
        raise DiceError("the source image is not a ShapesBench render (unrecognised components or object count)")
    return sb.Scene(seen["background"], tuple(seen["objects"]))


def _resized(o: sb.Obj, size: str) -> sb.Obj:
    """Return `o` at `size`, keeping its centre (as the change_size edit)."""
    d = (sb.SIZES[o.size] - sb.SIZES[size]) // 2
    return replace(o, size=size, row=o.row + d, col=o.col + d)


def target_scene(scene: sb.Scene, text: str) -> sb.Scene | None:
    """Return the scene `text` describes that keeps the source's positions, or None when none is defined.

    Same object count: each object (left to right) takes the prompt's size (centre kept), colour and shape;
    one object fewer: the source object the prompt names stays; more objects: no position is implied.
    """
    bg, want = sb.parse_prompt(text)
    src = list(sb.ordered(scene.objects))
    if len(want) == len(src):
        objs = [replace(_resized(o, size), colour=colour, shape=shape) for o, (size, colour, shape) in zip(src, want)]
    elif len(want) == len(src) - 1:
        objs = [o for o in src if (o.size, o.colour, o.shape) == want[0]][:1]
    else:
        return None
    target = sb.Scene(bg, sb.ordered(objs))
    return target if objs and sb.valid(target) and sb.prompt(target) == text else None


class ExploreState:
    """The explorer's data and caches: ShapesBench, the loaded models, and the last few inversions."""

    def __init__(self, bench: tuple[pd.DataFrame, dict[str, np.ndarray]] | None = None, max_inversions: int = 16):
        self.cases, self.grids = bench if bench is not None else benchmark_build.load()
        self._models: dict[str, Any] = {}
        self._inversions: OrderedDict[tuple, Any] = OrderedDict()
        self.max_inversions = max_inversions
        self.inversions_run = 0  # how many inversions this state has computed (cache misses)

    def model(self, name: str) -> Any:
        """Return the denoiser `name` (loaded once)."""
        if name not in self._models:
            self._models[name] = image_models.load(name)
        return self._models[name]

    def case(self, c: Controls) -> Case:
        """Return the source case the controls pick."""
        if c.source == "seed":
            source, target = sb.random_case(np.random.default_rng(c.source_seed), c.edit_type)
            return Case(f"{c.edit_type}@seed{c.source_seed}", sb.render(source), sb.prompt(source), source,
                        sb.render(target), sb.prompt(target))
        rows = np.flatnonzero(((self.cases["split"] == c.split) & (self.cases["type"] == c.edit_type)).to_numpy())
        if not 0 <= c.index < len(rows):
            raise DiceError(f"index {c.index} is outside the {len(rows)} {c.split} cases of type {c.edit_type} "
                            f"(0..{len(rows) - 1})")
        row = self.cases.iloc[rows[c.index]]
        source = self.grids["source"][rows[c.index]]
        return Case(str(row["id"]), source, str(row["source_prompt"]), scene_of(source),
                    self.grids["target"][rows[c.index]], str(row["target_prompt"]))

    def has_inversion(self, c: Controls, case: Case) -> bool:
        """Return whether the inversion these controls need is cached."""
        return inversion_key(c, case) in self._inversions

    def inversion(self, c: Controls, case: Case) -> Any:
        """Return the (cached) inversion of the case's source under its prompt with the controls' settings."""
        key = inversion_key(c, case)
        if key in self._inversions:
            self._inversions.move_to_end(key)
            return self._inversions[key]
        model = self.model(c.model)
        x0 = torch.from_numpy(np.asarray(case.source, dtype=np.int64).reshape(1, -1))
        steps = c.steps if c.method == "masked" else None
        inv = invert(model, x0, encode([case.source_prompt], model.config.prompt_len), method=c.method, steps=steps,
                     tau=c.tau, pseudo_inverse=c.pseudo_inverse, cfg_scale=c.cfg_scale,
                     generator=torch.Generator().manual_seed(c.seed), **METHODS[c.method])
        self.inversions_run += 1
        self._inversions[key] = inv
        while len(self._inversions) > self.max_inversions:
            self._inversions.popitem(last=False)
        return inv


def inversion_key(c: Controls, case: Case) -> tuple:
    """Return what the inversion depends on: model, source, tau, method, pseudo-inverse, steps, guidance, seed."""
    steps = c.steps if c.method == "masked" else None
    return (c.model, case.id, case.source.tobytes(), float(c.tau), c.method, c.pseudo_inverse, steps,
            None if c.cfg_scale in (None, 1, 1.0) else float(c.cfg_scale), c.seed)


def target_of(c: Controls, case: Case) -> tuple[str, np.ndarray | None]:
    """Return (target prompt, its oracle target [16, 16] or None) for the controls' preset."""
    if c.preset == CASE:
        return case.target_prompt, case.target
    if c.preset == FREE_TEXT:
        text = check_prompt(c.prompt)
        scene = target_scene(case.scene, text)
        return text, None if scene is None else sb.render(scene)
    scene = sb.edit_scene(np.random.default_rng(c.seed), case.scene, c.preset)
    if scene is None:
        n = len(case.scene.objects)
        raise DiceError(f"edit {c.preset!r} does not apply to this source ({n} object{'s' * (n > 1)}: "
                        f"{case.source_prompt!r}); pick another preset")
    return sb.prompt(scene), sb.render(scene)


def scores(edit: np.ndarray, source: np.ndarray, target: np.ndarray | None, prompt: str) -> dict[str, float]:
    """Return edit accuracy and preservation (NaN without an oracle target), whether the edit parses as
    `prompt` (1/0), and how many pixels changed (in all, and outside the edit mask)."""
    changed = edit != source
    if target is None:
        acc = keep = float("nan")
        outside = int(changed.sum())
    else:
        mask = target != source
        acc = float(im.edit_accuracy(edit[None], target[None], mask[None])[0])
        keep = float(im.preservation(edit[None], source[None], mask[None])[0])
        outside = int((changed & ~mask).sum())
    return {"edit_accuracy": acc, "preservation": keep, "parses_as_target": float(sb.matches_prompt(edit, prompt, sizes=True)),
            "changed": int(changed.sum()), "changed_outside": outside}


def _edits(state: ExploreState, c: Controls, case: Case, prompt: str, settings: list[dict[str, Any]]) -> list[np.ndarray]:
    """Return the edits [16, 16] of one inversion under `prompt`, one per setting (one edit grid)."""
    model = state.model(c.model)
    inv = state.inversion(c, case)
    cond = encode([prompt], model.config.prompt_len)
    out = edit_grid(model, inv, settings, conds=[cond] * len(settings),
                    generators=[torch.Generator().manual_seed(c.seed + 1) for _ in settings])
    return [x.cpu().numpy().reshape(sb.SIZE, sb.SIZE).astype(np.uint8) for x in out]


def update(state: ExploreState, controls: Controls, report: Callable[[str], None] | None = None) -> View:
    """Return the View of `controls`: source, oracle target, edit and scores, inverting only on a cache miss.

    `report(stage)` is called with each of STAGES as it starts (a progress display), "inverting" only
    when the inversion is computed. Bad control values raise a DiceError naming them.
    """
    start = time.perf_counter()
    report = report or (lambda stage: None)
    c = controls.check()
    report("source")
    case = state.case(c)
    prompt, target = target_of(c, case)
    inverted = not state.has_inversion(c, case)
    if inverted:
        report("inverting")
        state.inversion(c, case)
    report("editing")
    setting = {"lambda1": float(c.lambda1), "lambda2": None if c.lambda2 is None else float(c.lambda2),
               "injection": c.injection}
    edit = _edits(state, c, case, prompt, [setting])[0]
    report("scoring")
    return View(case, prompt, target, edit, scores(edit, case.source, target, prompt), inverted,
                time.perf_counter() - start, c)


# --- notebook 07: the static snapshot and the answers to its guided questions --------------------------


def lambda_table(state: ExploreState, controls: Controls, lambdas: list[float]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Return (scores per lambda1 with lambda2 = 1 - lambda1, the edits [16, 16]) from one inversion (one grid)."""
    c = controls.check()
    case = state.case(c)
    prompt, target = target_of(c, case)
    edits = _edits(state, c, case, prompt, [{"lambda1": float(v), "lambda2": None, "injection": c.injection}
                                            for v in lambdas])
    rows = [{"lambda1": float(v), "lambda2": resolve_lambda2(v, None), **scores(x, case.source, target, prompt)}
            for v, x in zip(lambdas, edits)]
    return pd.DataFrame(rows), edits


def noised_at_start(inv: Any) -> float:
    """Return the share of pixels the inversion's noisiest state has noised: the most an edit from it can change."""
    if inv.method == "masked":
        return float((inv.u[0] < inv.levels[-1]).float().mean())
    return float((inv.trajectory[-1, 0] != inv.x0[0]).float().mean())


def tau_table(state: ExploreState, controls: Controls, taus: list[float], lambda1: float | None = None) -> pd.DataFrame:
    """Return per tau: the share of pixels noised at the editing start (what may change) and the edit's scores
    (with `lambda1` in place of the controls' when given; lambda2 then 1 - lambda1)."""
    if lambda1 is not None:
        controls = replace(controls, lambda1=float(lambda1), lambda2=None)
    rows = []
    for tau in taus:
        c = replace(controls, tau=float(tau)).check()
        view = update(state, c)
        rows.append({"tau": float(tau), "noised_at_start": noised_at_start(state.inversion(c, view.case)), **view.scores})
    return pd.DataFrame(rows)


def reconstruction_table(state: ExploreState, controls: Controls, models: list[str],
                         pseudo_inverses: list[str]) -> pd.DataFrame:
    """Return per model and pseudo-inverse how many pixels editing with the source prompt, lambda1 = 1 and
    lambda2 = 0 gets wrong, and (pseudo-inverse `model`) how many pixels the model's clean prediction gets wrong."""
    rows = []
    for name in models:
        for pinv in pseudo_inverses:
            c = replace(controls, model=name, pseudo_inverse=pinv, preset=FREE_TEXT, lambda1=1.0, lambda2=0.0).check()
            case = state.case(c)
            c = replace(c, prompt=case.source_prompt)
            view = update(state, c)
            inv = state.inversion(c, case)
            wrong = None if inv.mismatch_rate is None else round(inv.mismatch_rate * case.source.size)
            rows.append({"model": name, "pseudo_inverse": pinv, "pixels_wrong": int(view.changed.sum()),
                         "clean_prediction_wrong": wrong})
    return pd.DataFrame(rows)


def snapshot_figure(view: View, table: pd.DataFrame, edits: list[np.ndarray]) -> plt.Figure:
    """Return the explorer as a still (notebook 00's lambda figure): source, oracle target and edit mask above
    the edit at each lambda1 of `table` with its scores and whether it parses as the target prompt."""
    if view.target is None:
        raise DiceError(f"the snapshot needs an oracle target; prompt {view.target_prompt!r} names none (use a preset)")
    c = view.controls
    case = pd.Series({"type": c.preset if c.preset != CASE else c.edit_type, "source_prompt": view.case.source_prompt,
                      "target_prompt": view.target_prompt})
    return lambda_edits_figure(case, view.case.source, view.target, view.mask, np.stack(edits), table,
                               title=f"{c.model}, {c.method}, tau {c.tau:g}, {c.pseudo_inverse} latents:\n"
                               "the explorer's edit over lambda1 (lambda2 = 1 - lambda1)")
