"""VARIN for next-scale autoregressive models: inversion (Alg. 2) and editing (Alg. 3) (SPEC §2.8).

A NextScaleDenoiser draws token maps r_0 .. r_{S-1}, coarse to fine, every token of scale k at once
given the coarser maps: r_k = argmax(log p(. | r_<k, c) + g_k). Inversion walks the scales with the
source maps as the prefix and keeps z_k = pseudo_inverse(log p(. | r_<k, c), r_k); editing copies
the scales below `start_scale` and from there draws r'_k = argmax(log p(. | r'_<k, c') + lambda1 z_k
+ lambda2 g_k) on its own prefix. Both compute every scale's guided log-probs with `scale_log_probs`,
so exact reconstruction never rests on two code paths agreeing to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from tqdm import tqdm

from . import conditions
from ..errors import DiceError, check_choice
from .api import GRID_OPTIONS, _UNSET, _classes, _generator, _resolve_grid, _split_rows
from .checks import check_number, check_range
from .guidance import Temperature, check_guidance, guidance_weight, mix, temperature_at
from .gumbel import gumbel
from .injection import check_lambdas, inject
from .inversion import CFG_SCHEDULES, Inversion, moved, next_scale_levels, scale_sizes
from .protocol import check_next_scale_model, model_device
from .pseudo_inverse import PSEUDO_INVERSES, STORES, check_margin, latent, to_storage
from .schedules import LambdaSchedule
from .settings import EDIT, INVERT, EditSettings, resolve_lambda2

OPTS = ("margin",)  # invert's method options for next_scale
EDIT_OPTIONS = GRID_OPTIONS + ("start_scale", "cfg_schedule")


def scale_guidance(cfg_scale: float | None, cfg_schedule: str, k: int, num_scales: int) -> float | None:
    """Return the guidance weight w_k of scale k: cfg_scale ("constant"), or VAR/HART's ramp ("linear")
    w_k = 1 + cfg_scale * k / (S - 1), i.e. (1 + t) c - t u with t = cfg_scale * k / (S - 1): scale 0 is
    plain conditional, the finest scale gets 1 + cfg_scale. None (no guidance) stays None."""
    if cfg_scale is None:
        return None
    if cfg_schedule == "constant":
        return cfg_scale
    return 1.0 + cfg_scale * (k / (num_scales - 1) if num_scales > 1 else 1.0)


def scale_temperature(temperature: Temperature, k: int, num_scales: int) -> float:
    """Return the temperature of scale k: a number, or a (start, end) pair moved linearly from `start`
    at scale 0 to `end` at the finest scale (inversion and editing read the same value)."""
    return temperature_at(temperature, k, num_scales)


Group = tuple  # (prefix: list of k maps [b, n_j], cond with b rows, b, cfg_scale w_k, temperature)


def scale_log_probs(model: Any, k: int, size: int, groups: list[Group], max_batch: int | None = None) -> list[torch.Tensor]:
    """Return the guided log-probs [b, size, K] of scale k for each group, from one model call (or calls of
    at most max_batch rows, unconditional twins included). The one function inversion, editing,
    regeneration and the recomputed inversion rows of store="none" all use.

    The model sees every group's rows in order, then the unconditional twins of the guided groups in the
    same order; guidance and temperature are applied by `guidance.mix`, as for the other methods.
    """
    if max_batch is None:
        return _call(model, k, size, groups)
    parts: list[list[torch.Tensor]] = [[] for _ in groups]
    for call in _split_rows([(g[2], g[3]) for g in groups], max_batch):
        sliced = [g if (lo, hi) == (0, g[2]) else ([m[lo:hi] for m in g[0]], conditions.take(g[1], lo, hi), hi - lo, *g[3:])
                  for j, lo, hi in call for g in [groups[j]]]
        for (j, _, _), logp in zip(call, _call(model, k, size, sliced)):
            parts[j].append(logp)
    return [p[0] if len(p) == 1 else torch.cat(p) for p in parts]


def _call(model: Any, k: int, size: int, groups: list[Group]) -> list[torch.Tensor]:
    """Return the guided log-probs of scale k per group from one `scale_logits` call."""
    guided = [g for g in groups if guidance_weight(g[3]) is not None]
    prefix = [torch.cat([g[0][j] for g in groups + guided]) for j in range(k)]
    cond = conditions.concat([g[1] for g in groups])
    if guided:
        cond = conditions.concat([cond, conditions.null_like(model, sum(g[2] for g in guided))])
    logits = model.scale_logits(prefix, cond)
    rows = sum(g[2] for g in groups + guided)
    expected = (rows, size, model.num_classes)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise DiceError(f"{type(model).__name__}.scale_logits returned {shape} for scale {k}; expected "
                        f"[B, h_k * w_k, K] = {list(expected)}")
    return mix(model, logits, [(g[2], g[3], g[4]) for g in groups])


def check_maps(maps: Any, scales: list[tuple[int, int]], k: int, what: str = "x0") -> list[torch.Tensor]:
    """Return the S token maps as LongTensors [B, h_k * w_k] after checking count, shapes, batch and ids < K."""
    sizes = [h * w for h, w in scales]
    if not isinstance(maps, (list, tuple)) or len(maps) != len(scales):
        got = f"{len(maps)} maps" if isinstance(maps, (list, tuple)) else type(maps).__name__
        raise DiceError(f"{what} must be a list of the model's S = {len(scales)} token maps [B, h_k * w_k] with "
                        f"h_k * w_k = {sizes} (scales {scales}), got {got}")
    out = []
    for j, m in enumerate(maps):
        if not isinstance(m, torch.Tensor) or m.dtype.is_floating_point or m.dtype.is_complex or m.dtype == torch.bool:
            got = f"dtype {m.dtype}" if isinstance(m, torch.Tensor) else type(m).__name__
            raise DiceError(f"{what}[{j}] must be a LongTensor [B, {sizes[j]}] of token ids, got {got}")
        b = maps[0].shape[0] if isinstance(maps[0], torch.Tensor) and maps[0].dim() >= 1 else None
        if m.dim() != 2 or m.shape[1] != sizes[j] or m.shape[0] < 1 or m.shape[0] != b:
            raise DiceError(f"{what}[{j}] must have shape [B, h * w] = [{b if b else 'B'}, {sizes[j]}] (scale {j} is "
                            f"{scales[j][0]}x{scales[j][1]}, row-major; every map has the same B), got {list(m.shape)}")
        check_range(f"{what}[{j}]", m, 0, k - 1, f"token ids 0..{k - 1} (the model has K={k} classes)")
        out.append(m.long())
    return out


def check_cond(cond: Any, rows: int, what: str = "cond") -> None:
    """Raise a DiceError unless `cond` has `rows` rows: at scale 0 the prefix is empty, so B comes from cond."""
    if conditions.batch_size(cond) is None:
        raise DiceError(f"method 'next_scale' needs {what} with one row per batch row ({rows}): at scale 0 the model "
                        "sees no prefix and takes B from the condition; for an unconditional model give its null "
                        f"condition repeated {rows} times, got {cond!r:.60}")
    conditions.check_rows(cond, rows, what)


def scale_latent(inv: Inversion, k: int, yhat: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Return z_k [B, n_k, K] for the inversion's guided log-probs `yhat` of scale k on the source prefix.

    lai draws from the per-scale seed lai_seed + k, so store="none" redraws the same latent. `model`:
    the target is the model's own prediction on the source prefix, which is yhat itself, so z_k = 0
    (reconstruction is greedy decoding, exact where argmax equals the source: see mismatch_rate).
    """
    gen = None
    if inv.pseudo_inverse == "lai":
        gen = torch.Generator(device=yhat.device).manual_seed(int(inv.lai_seed) + k)
    target = yhat if inv.pseudo_inverse == "model" else None
    return latent(inv.pseudo_inverse, yhat, label, target=target, margin=inv.margin, generator=gen)


def invert(model: Any, x0: Sequence[torch.Tensor], cond: Any, steps: int | None = None, tau: float = INVERT.tau,
           pseudo_inverse: str = INVERT.pseudo_inverse, cfg_scale: float | None = INVERT.cfg_scale,
           temperature: Temperature = INVERT.temperature, store: str = INVERT.store,
           generator: torch.Generator | None = None, progress: bool = False, cfg_schedule: str = INVERT.cfg_schedule,
           **opts: Any) -> Inversion:
    """Return the next_scale Inversion of the token maps x0 (S LongTensors [B, h_k * w_k]) under `cond`.

    VARIN Alg. 2: for each scale, with the source maps as the prefix, z_k = pseudo_inverse(log p_k, r_k).
    cfg_schedule: "constant" | "linear" (see `scale_guidance`); opts: margin (LAI). steps and tau do
    not apply. pseudo_inverse="model" also sets mismatch_rate (argmax log p_k != r_k on the source
    prefix) and reconstruction_error_rate (what `reconstruct` gets wrong: greedy decoding drifts
    after a mismatch). The reconstruction runs alongside so bfloat16 storage keeps its winners.
    """
    k, scales = check_next_scale_model(model)
    check_choice("pseudo_inverse", pseudo_inverse, PSEUDO_INVERSES)
    check_choice("store", store, STORES)
    unknown = sorted(set(opts) - set(OPTS))
    if unknown:
        raise DiceError(f"unknown option(s) {unknown} for method 'next_scale'; accepted: {list(OPTS)}")
    num = len(scales)
    if steps is not None:
        raise DiceError(f"steps does not apply to method 'next_scale' (it walks the model's S = {num} scales); "
                        f"leave it None, got {steps!r}")
    if tau != INVERT.tau:
        raise DiceError(f"tau does not apply to method 'next_scale' (use start_scale when editing); leave it "
                        f"{INVERT.tau}, got {tau!r}")
    cfg_scale, temperature = check_guidance(cfg_scale, temperature)
    margin = check_margin(opts.get("margin", INVERT.margin))
    cfg_schedule = check_choice("cfg_schedule", cfg_schedule, CFG_SCHEDULES)
    maps = check_maps(x0, scales, k)
    b = maps[0].shape[0]
    check_cond(cond, b)
    gen = _generator(generator)
    device = model_device(model)
    maps, cond = [m.to(device) for m in maps], conditions.to_device(cond, device)
    lai_seed = int(torch.randint(2**62, (1,), generator=gen, device=gen.device)) if pseudo_inverse == "lai" else None
    inv = Inversion(method="next_scale", pseudo_inverse=pseudo_inverse, store=store, num_classes=k, x0=torch.cat(maps, 1),
                    cond=cond, levels=next_scale_levels(num), steps=num, tau=1.0, cfg_scale=cfg_scale,
                    temperature=temperature, margin=margin, lai_seed=lai_seed, scales=torch.tensor(scales, dtype=torch.long),
                    cfg_schedule=cfg_schedule)
    if store == "none" and pseudo_inverse != "model":  # editing recomputes the latents: nothing to run now
        return inv
    if store != "none":
        dtype = torch.bfloat16 if store == "bfloat16" else torch.float32
        inv.latents = torch.empty((b, inv.num_positions, k), dtype=dtype, device=device)
    sizes, rec, greedy = scale_sizes(scales), [], []
    off = 0
    for s in tqdm(range(num), desc="invert", disable=not progress, leave=False):
        w, temp = scale_guidance(cfg_scale, cfg_schedule, s, num), scale_temperature(temperature, s, num)
        groups = [(maps[:s], cond, b, w, temp)]
        # onehot and lai reconstruct the source, so the reconstruction shares its rows; `model` may drift from
        # it after a mismatch, and then its own prefix rides in the same call
        drifted = not all(torch.equal(r, m) for r, m in zip(rec, maps))
        if drifted:
            groups.append((rec, cond, b, w, temp))
        out = scale_log_probs(model, s, sizes[s], groups)
        z = scale_latent(inv, s, out[0], maps[s])
        winner = inject(out[-1], z, torch.zeros_like(z), 1.0, 0.0).argmax(-1)  # exactly as editing scores it
        if store != "none":
            inv.latents[:, off:off + sizes[s]] = to_storage(z, winner, store)
        greedy.append(out[0].argmax(-1))
        rec.append(winner)
        off += sizes[s]
    if pseudo_inverse == "model":
        inv.mismatch_rate = float((torch.cat(greedy, 1) != inv.x0).float().mean())
        inv.reconstruction_error_rate = float((torch.cat(rec, 1) != inv.x0).float().mean())
    return inv


@dataclass
class _Run:
    """One edit setting resolved: its condition, guidance, first edited scale, lambdas per edited scale, generator."""

    cond: Any
    cfg_scale: float | None
    cfg_schedule: str
    temperature: Temperature
    start: int
    lambda1s: list[float]
    lambda2s: list[float]
    injection: str
    generator: torch.Generator


def _resolve(inv: Inversion, spec: Any, cond: Any, generator: Any) -> _Run:
    """Return one setting resolved against a next_scale inversion, or raise a DiceError naming the bad value."""
    if isinstance(spec, EditSettings):
        spec = {**spec.edit_kwargs(), "start_scale": spec.start_scale}
    if not isinstance(spec, dict):
        raise DiceError(f"an edit setting must be an EditSettings or a dict of edit arguments, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(EDIT_OPTIONS))
    if unknown:
        raise DiceError(f"unknown edit setting(s) {unknown} for a next_scale inversion; accepted: {list(EDIT_OPTIONS)}")
    if "cond" in spec and cond is not _UNSET:
        raise DiceError("a setting's cond is given twice, in the setting and in conds; give one")
    o = {**EDIT.edit_kwargs(), "cfg_scale": None, "temperature": None, "cfg_schedule": None, "start_scale": None,
         "cond": None if cond is _UNSET else cond, **spec}
    cfg_scale, temperature = check_guidance(inv.cfg_scale if o["cfg_scale"] is None else o["cfg_scale"],
                                            inv.temperature if o["temperature"] is None else o["temperature"])
    cfg_schedule = check_choice("cfg_schedule", inv.cfg_schedule if o["cfg_schedule"] is None else o["cfg_schedule"],
                                CFG_SCHEDULES)
    num = inv.num_scales
    start = EDIT.start_scale if o["start_scale"] is None else o["start_scale"]
    start = check_number("start_scale", start, f"an int in 0..{num - 1} (the first regenerated of the inversion's "
                         f"S = {num} scales)", lambda v: 0 <= v < num, integer=True)
    lambda1, lambda2, injection = o["lambda1"], o["lambda2"], o["injection"]
    check_lambdas(lambda1, 0.0 if lambda2 is None else lambda2, injection)
    check_cond(o["cond"], inv.batch_size)
    schedule = o["lambda_schedule"]
    if not isinstance(schedule, LambdaSchedule):
        schedule = LambdaSchedule(schedule, lambda1, o["lambda1_end"])
    if schedule.kind == "mi":
        raise DiceError("lambda_schedule 'mi' follows a noise process's mutual information, which next_scale has not; "
                        "use 'uniform', 'linear' or 'exponential' (they run over the edited scales)")
    lambda1s = schedule.values(inv.levels.flip(0)[start:]).tolist()  # p = 0 at start_scale, 1 at the finest scale
    lambda2s = [resolve_lambda2(v, lambda2) for v in lambda1s]
    for l1, l2 in zip(lambda1s, lambda2s):
        check_lambdas(l1, l2, injection)
    return _Run(o["cond"], cfg_scale, cfg_schedule, temperature, start, lambda1s, lambda2s, injection, _generator(generator))


def _prefix(maps: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Return an edit's prefix at scale k: its own maps of scales 0..k-1 (the edit's, not the source's)."""
    return maps[:k]


def _same_prefix(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    """Return True when the two prefixes hold the same maps (the same tensors, or equal ones)."""
    return all(x is y or torch.equal(x, y) for x, y in zip(a, b))


def sample_scales(model: Any, source: list[torch.Tensor], runs: list[_Run], sizes: list[int],
                  latent_at: Callable[[int, torch.Tensor | None], torch.Tensor] | None,
                  inversion_row: tuple[Any, float | None, str, Temperature] | None = None,
                  max_batch: int | None = None, progress: bool = False) -> list[list[torch.Tensor]]:
    """Return the S maps of every run: scales below its start copied from `source`, the others drawn as
    argmax(inject(log p(. | own prefix, c'), z_k, g_k)), all runs' rows of a scale in one model call.

    latent_at(k, yhat of the inversion rows or None) gives z_k [B, n_k, K] (None: no latent, regeneration);
    inversion_row (cond, cfg_scale, cfg_schedule, temperature) adds the inversion's rows on the source
    prefix to each call (store="none"). Rows of one class (condition, guidance, temperature) with equal
    prefixes are computed once: every setting still starting from the source, and the inversion's.
    """
    num, b = len(sizes), source[0].shape[0]
    xs: list[list[torch.Tensor]] = [[] for _ in runs]
    for s in tqdm(range(num), desc="edit", disable=not progress, leave=False):
        active = [j for j, r in enumerate(runs) if s >= r.start]
        for j, r in enumerate(runs):
            if s < r.start:
                xs[j].append(source[s])  # the same tensor: later prefixes compare by identity first
        if not active:
            continue
        entries = [(_prefix(xs[j], s), runs[j].cond, scale_guidance(runs[j].cfg_scale, runs[j].cfg_schedule, s, num),
                    scale_temperature(runs[j].temperature, s, num)) for j in active]
        if inversion_row is not None:
            c, cfg, sched, temp = inversion_row
            entries.append((source[:s], c, scale_guidance(cfg, sched, s, num), scale_temperature(temp, s, num)))
        classes = _classes([(e[1], e[2], e[3]) for e in entries])
        first: list[int] = []
        for j, e in enumerate(entries):
            first.append(next((m for m in range(j) if first[m] == m and classes[m] == classes[j]
                               and _same_prefix(entries[m][0], e[0])), j))
        unique = [j for j, f in enumerate(first) if f == j]
        out = scale_log_probs(model, s, sizes[s], [(entries[j][0], entries[j][1], b, entries[j][2], entries[j][3])
                                                   for j in unique], max_batch)
        yhats = dict(zip(unique, out))
        z = latent_at(s, yhats[first[-1]] if inversion_row is not None else None) if latent_at is not None else None
        for e, j in enumerate(active):
            r, step, yhat = runs[j], s - runs[j].start, yhats[first[e]]
            l1, l2 = r.lambda1s[step], r.lambda2s[step]
            g = gumbel(tuple(yhat.shape), r.generator, device=yhat.device) if l2 != 0 else torch.zeros_like(yhat)
            xs[j].append(inject(yhat, torch.zeros_like(yhat) if z is None else z, g, l1, l2, r.injection).argmax(-1))
    # copied maps were the source's own tensors (cheap prefix comparisons); the caller gets copies
    return [[m.clone() if m is source[s] else m for s, m in enumerate(maps)] for maps in xs]


def edit_grid(model: Any, inv: Inversion, settings: Sequence[EditSettings | dict[str, Any]], conds: Sequence[Any] | None = None,
              generators: Sequence[torch.Generator | None] | None = None, max_batch: int | None = None,
              progress: bool = False) -> list[list[torch.Tensor]]:
    """Return the S edited maps [B, h_k * w_k] of every setting (VARIN Alg. 3) from one next_scale inversion.

    Settings as `api.edit_grid`, plus start_scale (the first regenerated scale, default
    EditSettings.start_scale) and cfg_schedule (None: the inversion's); lambda schedules run over the
    edited scales (p = 0 at start_scale). One model call per scale for all settings (and, store="none",
    the inversion's rows); each setting equals its own `edit` token for token.
    """
    k, scales = check_next_scale_model(model)
    if k != inv.num_classes:
        raise DiceError(f"the inversion was made with K={inv.num_classes} classes but this model has K={k}")
    if scales != [tuple(s) for s in inv.scales.tolist()]:
        raise DiceError(f"the inversion's scales {inv.scales.tolist()} differ from this model's {scales}")
    runs = _resolve_grid(inv, settings, conds, generators, resolve=_resolve)
    num = len(scales)
    recompute = inv.store == "none" and inv.pseudo_inverse != "model"  # `model` latents are 0: nothing to recompute
    if max_batch is not None:
        guided = [(r.cfg_scale, r.cfg_schedule) for r in runs] + ([(inv.cfg_scale, inv.cfg_schedule)] if recompute else [])
        need = 2 if any(guidance_weight(scale_guidance(c, sc, s, num)) is not None for c, sc in guided for s in range(num)) else 1
        max_batch = check_number("max_batch", max_batch, f"None or an int >= {need} (rows per model call"
                                 + ("; a guided row brings its unconditional twin)" if need == 2 else ")"),
                                 lambda v: v >= need, integer=True)
    device = model_device(model)
    inv = moved(inv, device)
    for r in runs:
        r.cond = conditions.to_device(r.cond, device)
    sizes = scale_sizes(scales)
    source = inv.x0_maps
    offsets = [sum(sizes[:s]) for s in range(num)]

    def latent_at(s: int, yhat_inv: torch.Tensor | None) -> torch.Tensor:
        if recompute:
            return scale_latent(inv, s, yhat_inv, source[s])
        if inv.store == "none":  # pseudo_inverse="model": z = 0
            return torch.zeros((inv.batch_size, sizes[s], k), device=device)
        return inv.latents[:, offsets[s]:offsets[s] + sizes[s]].float()

    row = (inv.cond, inv.cfg_scale, inv.cfg_schedule, inv.temperature) if recompute else None
    return sample_scales(model, source, runs, sizes, latent_at, row, max_batch, progress)

