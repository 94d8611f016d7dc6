"""dicelib's public entry points: `invert` an input into latents, `edit` it under a new condition (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from tqdm import tqdm

from . import conditions
from ..errors import DiceError, check_choice
from .checks import check_number, check_range
from .guidance import Temperature, check_guidance, guidance_weight, levels_for, predict_log_probs, temperature_at
from .gumbel import gumbel
from .injection import check_lambdas, inject
from .inversion import METHODS, Inversion, moved
from .masked import MaskedTrajectory
from .masked import draw_trajectory as draw_masked
from .multinomial import MultinomialTrajectory
from .multinomial import draw_trajectory as draw_multinomial
from .protocol import check_model, model_device
from .pseudo_inverse import PSEUDO_INVERSES, STORES, check_margin, latent, to_storage
from .schedules import LambdaSchedule, check_steps, check_tau
from .settings import EDIT, INVERT, MASKED_STEPS, EditSettings, resolve_lambda2

TRAJECTORIES = {"masked": MaskedTrajectory, "multinomial": MultinomialTrajectory}
OPTS = {"masked": ("mask_schedule", "noise", "margin"), "multinomial": ("schedule", "margin")}


def _check_x0(x0: Any, k: int) -> torch.Tensor:
    if not isinstance(x0, torch.Tensor):
        raise DiceError(f"x0 must be a LongTensor [B, D] of class ids, got {type(x0).__name__}")
    if x0.dtype.is_floating_point or x0.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise DiceError(f"x0 must hold integer class ids (LongTensor [B, D]), got dtype {x0.dtype}")
    if x0.dim() != 2 or x0.shape[0] < 1 or x0.shape[1] < 1:
        raise DiceError(f"x0 must have shape [B, D] with B, D >= 1, got {list(x0.shape)}")
    check_range("x0", x0, 0, k - 1, f"class ids 0..{k - 1} (the model has K={k} classes)")
    return x0.long()


def _generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(0)  # explicit and reproducible even when none is passed
    if not isinstance(generator, torch.Generator):
        raise DiceError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def _latent(inv: Inversion, traj: Any, i: int, yhat: torch.Tensor, target0: torch.Tensor | None) -> torch.Tensor:
    """Return z at step index i; LAI draws come from a per-step seed so store='none' can redraw them."""
    gen = None
    if inv.pseudo_inverse == "lai":
        gen = torch.Generator(device=yhat.device).manual_seed(int(inv.lai_seed) + i)
    target = traj.model_target(target0, i) if inv.pseudo_inverse == "model" else None
    return latent(inv.pseudo_inverse, yhat, traj.label(i), target=target, margin=inv.margin, generator=gen)


def _clean_prediction(model: Any, inv: Inversion, max_batch: int | None = None) -> torch.Tensor:
    """Return D(x0, t=0, c) as guided log-probs [B, D, K] (the `model` pseudo-inverse's target)."""
    x0 = inv.x0
    temperature = temperature_at(inv.temperature, 0, inv.num_edit_steps)  # the least noisy step's
    return _forward(model, [(x0, levels_for(x0, 0.0), inv.cond, inv.cfg_scale, temperature)], max_batch)[0]


def invert(model: Any, x0: torch.Tensor, cond: Any = None, method: str = INVERT.method,
           steps: int | None = INVERT.steps, tau: float = INVERT.tau, pseudo_inverse: str = INVERT.pseudo_inverse,
           cfg_scale: float | None = INVERT.cfg_scale, temperature: Temperature = INVERT.temperature,
           store: str = INVERT.store, generator: torch.Generator | None = None, progress: bool = False,
           cfg_schedule: str = INVERT.cfg_schedule, **opts: Any) -> Inversion:
    """Return the Inversion of x0 [B, D] under `cond`: the trajectory and latents that regenerate it.

    method: "masked" (Alg. 1; steps default MASKED_STEPS), "multinomial" (Alg. 2; steps = the
    transition schedule's T, default 100) or "next_scale" (VARIN Alg. 2 for a NextScaleDenoiser: x0 is
    the list of S token maps [B, h_k * w_k]; steps and tau do not apply; see `next_scale.invert`). opts: masked — mask_schedule ("linear", "cosine", "root",
    "arccos", "cubic"), noise ("uniform" | "mask"), margin (LAI); multinomial — schedule (a
    MultinomialSchedule), margin. Defaults: `dicelib.core.settings.InvertSettings`.
    pseudo_inverse="model" also sets `mismatch_rate` and `reconstruction_error_rate` (see Inversion); the
    latter runs the reconstruction alongside: up to one more forward pass per step, even with store="none".
    """
    check_choice("method", method, METHODS)
    if method == "next_scale":  # VARIN: no trajectory, the source maps are the prefix (core/next_scale.py)
        from . import next_scale

        return next_scale.invert(model, x0, cond, steps=steps, tau=tau, pseudo_inverse=pseudo_inverse, cfg_scale=cfg_scale,
                                 temperature=temperature, store=store, generator=generator, progress=progress,
                                 cfg_schedule=cfg_schedule, **opts)
    if cfg_schedule != INVERT.cfg_schedule:
        raise DiceError(f"cfg_schedule applies to method 'next_scale' only (its guidance ramp over the scales); "
                        f"method {method!r} takes {INVERT.cfg_schedule!r}, got {cfg_schedule!r}")
    k = check_model(model)
    check_choice("pseudo_inverse", pseudo_inverse, PSEUDO_INVERSES)
    check_choice("store", store, STORES)
    unknown = sorted(set(opts) - set(OPTS[method]))
    if unknown:
        raise DiceError(f"unknown option(s) {unknown} for method {method!r}; accepted: {list(OPTS[method])}")
    tau = check_tau(tau)
    if steps is not None:
        steps = check_steps(steps)
    cfg_scale, temperature = check_guidance(cfg_scale, temperature)
    margin = check_margin(opts.pop("margin", INVERT.margin))
    x0 = _check_x0(x0, k)
    conditions.check_rows(cond, x0.shape[0])
    gen = _generator(generator)
    device = model_device(model)
    x0, cond = x0.to(device), conditions.to_device(cond, device)

    if method == "masked":
        fields = draw_masked(model, x0, steps or MASKED_STEPS, tau, gen, **opts)
        fields["steps"] = steps or MASKED_STEPS
    else:
        fields = draw_multinomial(model, x0, steps, tau, gen, **opts)
    lai_seed = int(torch.randint(2**62, (1,), generator=gen, device=gen.device)) if pseudo_inverse == "lai" else None
    inv = Inversion(method=method, pseudo_inverse=pseudo_inverse, store=store, num_classes=k, x0=x0, cond=cond,
                    tau=tau, cfg_scale=cfg_scale, temperature=temperature, margin=margin, lai_seed=lai_seed, **fields)
    traj = TRAJECTORIES[method](inv)
    target0 = None
    if pseudo_inverse == "model":
        target0 = _clean_prediction(model, inv)
        inv.mismatch_rate = float((target0.argmax(-1) != x0).float().mean())
    elif store == "none":  # editing recomputes the latents from the trajectory: nothing to run now
        return inv
    n = inv.num_edit_steps
    if store != "none":
        dtype = torch.bfloat16 if store == "bfloat16" else torch.float32
        inv.latents = torch.empty((n, *x0.shape, traj.num_states), dtype=dtype, device=device)  # once: can be GBs
    # Steps run in editing order with the reconstruction (edit with lambda1 = 1, lambda2 = 0) alongside:
    # its token at each step tells bfloat16 storage which class must keep winning, and its output the
    # `model` pseudo-inverse's reconstruction error. Latents do not depend on the order (LAI seeds per step).
    # onehot and lai never leave the inversion's states; `model` does after a mismatch, and then costs one
    # more forward pass per step, called exactly as editing calls it so that the predictions are the same.
    x_rec = traj.state(n - 1)
    for i in tqdm(range(n - 1, -1, -1), desc="invert", disable=not progress, leave=False):
        x, t, temp = traj.state(i), levels_for(x0, traj.model_level(i)), temperature_at(temperature, i, n)
        yhat = traj.yhat(predict_log_probs(model, [(x, t, cond)], cfg_scale, temp)[0], x, i)
        z = _latent(inv, traj, i, yhat, target0)
        if not torch.equal(x_rec, x):
            yhat = traj.yhat(predict_log_probs(model, [(x_rec, t, cond)], cfg_scale, temp)[0], x_rec, i)
        winner = traj.restrict(yhat + z, i).argmax(-1)
        if store != "none":
            inv.latents[i] = to_storage(z, winner, store)
        x_rec = traj.advance(winner, i)
    if pseudo_inverse == "model":
        inv.reconstruction_error_rate = float((x_rec != x0).float().mean())
    return inv


def edit(model: Any, inv: Inversion, cond: Any = None, lambda1: float = EDIT.lambda1,
         lambda2: float | None = EDIT.lambda2, injection: str = EDIT.injection,
         lambda_schedule: str | LambdaSchedule = EDIT.lambda_schedule, cfg_scale: float | None = None,
         temperature: Temperature | None = None, generator: torch.Generator | None = None,
         lambda1_end: float = EDIT.lambda1_end, progress: bool = False,
         start_scale: int = EDIT.start_scale, cfg_schedule: str | None = None) -> torch.Tensor | list[torch.Tensor]:
    """Return the edited tokens [B, D]: regenerate from the inversion under `cond`, guided by its latents.

    A next_scale inversion returns the list of S edited maps [B, h_k * w_k]; `start_scale` (an int in
    0..S-1, default EditSettings.start_scale = 0) is its first regenerated scale, the coarser ones are the source's;
    cfg_schedule (None: the inversion's) its guidance ramp over the scales.

    lambda1 weighs the latents (the source's information), lambda2 fresh Gumbel noise. With
    cond = the inversion's condition, lambda1 = 1, lambda2 = 0 and additive injection this is the
    input, token for token. Non-uniform `lambda_schedule`s move lambda1 from `lambda1` (noisiest
    step) to `lambda1_end`; lambda2=None means 1 - lambda1 at every step. cfg_scale and
    temperature default (None) to the inversion's values; a (start, end) temperature moves over the steps
    as in `invert` (see `temperature_at`). Defaults: `dicelib.core.settings.EditSettings`.
    This is `edit_grid` with one setting; many settings from one inversion are cheaper as one grid.
    """
    setting = dict(lambda1=lambda1, lambda2=lambda2, injection=injection, lambda_schedule=lambda_schedule,
                   lambda1_end=lambda1_end, cfg_scale=cfg_scale, temperature=temperature)
    if start_scale != EDIT.start_scale or getattr(inv, "method", None) == "next_scale":
        setting["start_scale"] = start_scale
    if cfg_schedule is not None:
        setting["cfg_schedule"] = cfg_schedule
    return edit_grid(model, inv, [setting], conds=[cond], generators=[generator], progress=progress)[0]


GRID_OPTIONS = ("lambda1", "lambda2", "injection", "lambda_schedule", "lambda1_end", "cfg_scale", "temperature", "cond")


@dataclass
class _Run:
    """One setting of an edit grid, resolved: its rows' condition and guidance, lambdas per step, generator."""

    cond: Any
    cfg_scale: float | None
    temperature: Temperature
    lambda1s: list[float]
    lambda2s: list[float]
    injection: str
    generator: torch.Generator


def edit_grid(model: Any, inv: Inversion, settings: Sequence[EditSettings | dict[str, Any]], conds: Sequence[Any] | None = None,
              generators: Sequence[torch.Generator | None] | None = None, max_batch: int | None = None,
              progress: bool = False) -> list[torch.Tensor]:
    """Return the edited tokens [B, D] of every setting: `edit` under many settings from one inversion at once.

    settings: each an EditSettings (its `edit_kwargs()`: guidance and temperature stay the inversion's)
    or a dict of `edit`'s keyword arguments (lambda1, lambda2, injection, lambda_schedule, lambda1_end,
    cfg_scale, temperature) and `cond`, the setting's target condition (default None). conds: one
    target condition per setting, instead of the dicts' `cond`. generators: one per setting, distinct
    objects (None: torch.Generator().manual_seed(0), as `edit`). Each setting's result equals its own
    `edit` call token for token: it draws the same Gumbel noise from its generator in the same order.

    Every step is one model call for all settings (rows: settings x B, each setting with its own
    guidance and temperature, the unconditional twins in the same call), the inversion's latent is
    computed once and shared (never copied per setting), with store="none" the recomputed inversion
    rows too, and rows that repeat others (every setting's first step under one condition, a
    reconstruction's rows and the inversion's) are computed once. max_batch: at most that many rows per
    model call, unconditional twins included; a bigger step is split over several calls.
    A next_scale inversion goes to `next_scale.edit_grid`: the same, scale by scale, each result a list of maps.
    """
    if not isinstance(inv, Inversion):
        raise DiceError(f"inv must be a dicelib.Inversion (from dicelib.invert or Inversion.load), got {type(inv).__name__}")
    inv.validate()
    if inv.method == "next_scale":
        from . import next_scale

        return next_scale.edit_grid(model, inv, settings, conds, generators, max_batch, progress)
    k = check_model(model)
    if k != inv.num_classes:
        raise DiceError(f"the inversion was made with K={inv.num_classes} classes but this model has K={k}")
    d_model = getattr(model, "num_positions", None)
    if d_model is not None and d_model != inv.num_positions:
        raise DiceError(f"the inversion has D={inv.num_positions} positions but this model takes D={d_model}")
    noise_id = int(inv.noise.reshape(-1)[0]) if inv.method == "masked" and inv.noise_kind == "mask" else model.mask_id
    if noise_id != model.mask_id:
        raise DiceError(f"the inversion's noise is [MASK] id {noise_id} but this model's mask_id is {model.mask_id!r}")
    runs = _resolve_grid(inv, settings, conds, generators)
    recompute = inv.store == "none"
    if max_batch is not None:
        guided = [r.cfg_scale for r in runs] + ([inv.cfg_scale] if recompute else [])
        need = 2 if any(guidance_weight(c) is not None for c in guided) else 1
        max_batch = check_number("max_batch", max_batch, f"None or an int >= {need} (rows per model call; a guided "
                                 "row brings its unconditional twin)" if need == 2 else "None or an int >= 1",
                                 lambda v: v >= need, integer=True)
    device = model_device(model)
    inv = moved(inv, device)
    for r in runs:
        r.cond = conditions.to_device(r.cond, device)
    traj = TRAJECTORIES[inv.method](inv)
    target0 = _clean_prediction(model, inv, max_batch) if recompute and inv.pseudo_inverse == "model" else None
    # the rows of a step: every setting's, then (store="none") the inversion's; entries of one class share
    # condition, guidance and temperature, so their rows repeat whenever their states do
    rows = [(r.cond, r.cfg_scale, r.temperature) for r in runs] + ([(inv.cond, inv.cfg_scale, inv.temperature)] if recompute else [])
    classes = _classes(rows)

    n = inv.num_edit_steps
    xs = [traj.state(n - 1)] * len(runs)  # one tensor: every setting starts from the inversion's noisiest state
    for step, i in enumerate(tqdm(range(n - 1, -1, -1), desc="edit", disable=not progress, leave=False)):
        states = xs + ([traj.state(i)] if recompute else [])
        first = _first_of(states, classes, len(runs))
        unique = [j for j, f in enumerate(first) if f == j]
        level = traj.model_level(i)
        groups = [(states[j], levels_for(states[j], level), rows[j][0], rows[j][1], temperature_at(rows[j][2], i, n))
                  for j in unique]
        yhats = {j: traj.yhat(logp, states[j], i) for j, logp in zip(unique, _forward(model, groups, max_batch))}
        z = _latent(inv, traj, i, yhats[first[-1]], target0) if recompute else inv.latents[i].float()
        for s, r in enumerate(runs):
            yhat = yhats[first[s]]
            # no noise to draw where lambda2 = 0 (reconstruction): a quarter of the editing time at large K
            g = gumbel(tuple(yhat.shape), r.generator, device=device) if r.lambda2s[step] != 0 else torch.zeros_like(yhat)
            scores = inject(yhat, z, g, r.lambda1s[step], r.lambda2s[step], r.injection)
            xs[s] = traj.advance(traj.restrict(scores, i).argmax(-1), i)
    return xs


def _resolve_grid(inv: Inversion, settings: Any, conds: Any, generators: Any, resolve: Any = None) -> list[Any]:
    """Return the grid's settings resolved against the inversion, or raise a DiceError naming the bad one."""
    if not isinstance(settings, (list, tuple)) or not settings:
        raise DiceError(f"settings must be a non-empty list of EditSettings or dicts of edit arguments, got {settings!r:.80}")
    conds, generators = (_per_setting(name, v, len(settings)) for name, v in (("conds", conds), ("generators", generators)))
    owner: dict[int, int] = {}
    for j, gen in enumerate(generators):
        if gen is not None and owner.setdefault(id(gen), j) != j:
            raise DiceError(f"generators[{j}] is the same generator as generators[{owner[id(gen)]}]: give every setting "
                            "its own (one edit after another would draw from a shared one in turn, a grid step by step)")
    runs = []
    for j, (spec, cond, gen) in enumerate(zip(settings, conds, generators)):
        try:
            runs.append((resolve or _resolve)(inv, spec, cond, gen))
        except DiceError as err:
            if len(settings) == 1:  # edit(): its own argument names say it all
                raise
            raise type(err)(f"settings[{j}]: {err}") from None
    return runs


_UNSET = object()


def _per_setting(name: str, values: Any, n: int) -> list[Any]:
    """Return `values` as a list of one entry per setting (None: every entry unset), after checking its length."""
    if values is None:
        return [None if name == "generators" else _UNSET] * n
    if not isinstance(values, (list, tuple)) or len(values) != n:
        got = f"{len(values)} entries" if isinstance(values, (list, tuple)) else repr(values)[:80]
        raise DiceError(f"{name} must be None or a list of one entry per setting ({n}), got {got}")
    return list(values)


def _resolve(inv: Inversion, spec: Any, cond: Any, generator: Any) -> _Run:
    """Return one setting resolved: guidance (None: the inversion's), condition, lambdas per editing step, generator."""
    if isinstance(spec, EditSettings):
        spec = spec.edit_kwargs()
    if not isinstance(spec, dict):
        raise DiceError(f"an edit setting must be an EditSettings or a dict of edit arguments, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(GRID_OPTIONS))
    if {"start_scale", "cfg_schedule"} & set(unknown):
        raise DiceError(f"{', '.join(sorted({'start_scale', 'cfg_schedule'} & set(unknown)))} applies to next_scale "
                        f"inversions only; this inversion's method is {inv.method!r}")
    if unknown:
        raise DiceError(f"unknown edit setting(s) {unknown}; accepted: {list(GRID_OPTIONS)}")
    if "cond" in spec and cond is not _UNSET:
        raise DiceError("a setting's cond is given twice, in the setting and in conds; give one")
    o = {**EDIT.edit_kwargs(), "cfg_scale": None, "temperature": None, "cond": None if cond is _UNSET else cond, **spec}
    cfg_scale, temperature = check_guidance(inv.cfg_scale if o["cfg_scale"] is None else o["cfg_scale"],
                                            inv.temperature if o["temperature"] is None else o["temperature"])
    lambda1, lambda2, injection = o["lambda1"], o["lambda2"], o["injection"]
    check_lambdas(lambda1, 0.0 if lambda2 is None else lambda2, injection)
    conditions.check_rows(o["cond"], inv.batch_size)
    schedule = o["lambda_schedule"]
    if not isinstance(schedule, LambdaSchedule):
        schedule = LambdaSchedule(schedule, lambda1, o["lambda1_end"])
    lambda1s = schedule.values(inv.levels.flip(0)).tolist()  # editing runs from the noisiest step down
    lambda2s = [resolve_lambda2(v, lambda2) for v in lambda1s]
    for l1, l2 in zip(lambda1s, lambda2s):
        check_lambdas(l1, l2, injection)
    return _Run(o["cond"], cfg_scale, temperature, lambda1s, lambda2s, injection, _generator(generator))


def _classes(rows: list[tuple[Any, float | None, Temperature]]) -> list[int]:
    """Return for each (cond, cfg_scale, temperature) entry the index of the first entry equal to it (its class)."""
    out: list[int] = []
    for j, (cond, cfg, temp) in enumerate(rows):
        out.append(next((out[m] for m in range(j) if (guidance_weight(cfg), temp) == (guidance_weight(rows[m][1]), rows[m][2])
                         and conditions.same(cond, rows[m][0])), j))
    return out


def _first_of(states: list[torch.Tensor], classes: list[int], compare_from: int) -> list[int]:
    """Return for each entry the first entry of its class with the same states: the one whose rows it reuses.

    Settings repeat each other's states only at the first step, where they share one tensor, so they are
    compared by identity; from `compare_from` on (the inversion's rows) by value.
    """
    first: list[int] = []
    for j, x in enumerate(states):
        first.append(next((m for m in range(j) if first[m] == m and classes[m] == classes[j]
                           and (states[m] is x or (j >= compare_from and torch.equal(states[m], x)))), j))
    return first


def _forward(model: Any, groups: list[tuple], max_batch: int | None) -> list[torch.Tensor]:
    """Return `predict_log_probs` of the groups: one call, or calls of at most max_batch model rows each."""
    if max_batch is None:
        return predict_log_probs(model, groups)
    parts: list[list[torch.Tensor]] = [[] for _ in groups]
    for call in _split(groups, max_batch):
        sliced = [g if (lo, hi) == (0, g[0].shape[0]) else (g[0][lo:hi], g[1][lo:hi], conditions.take(g[2], lo, hi), *g[3:])
                  for j, lo, hi in call for g in [groups[j]]]
        for (j, _, _), logp in zip(call, predict_log_probs(model, sliced)):
            parts[j].append(logp)
    return [p[0] if len(p) == 1 else torch.cat(p) for p in parts]


def _split(groups: list[tuple], max_batch: int) -> list[list[tuple[int, int, int]]]:
    """Return the calls as lists of (group index, first row, end row), each at most max_batch model rows
    (a guided row counts twice: its unconditional twin rides in the same call)."""
    return _split_rows([(g[0].shape[0], g[3]) for g in groups], max_batch)


def _split_rows(groups: list[tuple[int, float | None]], max_batch: int) -> list[list[tuple[int, int, int]]]:
    """Return the calls for groups of (rows, cfg_scale) as lists of (group index, first row, end row), each at
    most max_batch model rows (a guided row counts twice: its unconditional twin rides in the same call)."""
    calls: list[list[tuple[int, int, int]]] = [[]]
    room = max_batch
    for j, (rows, cfg) in enumerate(groups):
        cost = 1 if guidance_weight(cfg) is None else 2
        lo = 0
        while lo < rows:
            take = min(rows - lo, room // cost)
            if take == 0:  # max_batch >= cost (checked): a fresh call always has room
                calls.append([])
                room = max_batch
                continue
            calls[-1].append((j, lo, lo + take))
            lo, room = lo + take, room - take * cost
    return calls


def reconstruct(model: Any, inv: Inversion, progress: bool = False) -> torch.Tensor:
    """Return edit(model, inv, inv.cond, lambda1=1, lambda2=0): the input itself for exact pseudo-inverses."""
    return edit(model, inv, inv.cond, lambda1=1.0, lambda2=0.0, progress=progress)
