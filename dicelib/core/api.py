"""dicelib's public entry points: `invert` an input into latents, `edit` it under a new condition (SPEC §3)."""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from . import conditions
from ..errors import DiceError, check_choice
from .checks import check_range
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
from .settings import EDIT, INVERT, MASKED_STEPS, resolve_lambda2

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


def _clean_prediction(model: Any, inv: Inversion) -> torch.Tensor:
    """Return D(x0, t=0, c) as guided log-probs [B, D, K] (the `model` pseudo-inverse's target)."""
    x0 = inv.x0
    temperature = temperature_at(inv.temperature, 0, inv.num_edit_steps)  # the least noisy step's
    return predict_log_probs(model, [(x0, levels_for(x0, 0.0), inv.cond)], inv.cfg_scale, temperature)[0]


def invert(model: Any, x0: torch.Tensor, cond: Any = None, method: str = INVERT.method,
           steps: int | None = INVERT.steps, tau: float = INVERT.tau, pseudo_inverse: str = INVERT.pseudo_inverse,
           cfg_scale: float | None = INVERT.cfg_scale, temperature: Temperature = INVERT.temperature,
           store: str = INVERT.store, generator: torch.Generator | None = None, progress: bool = False,
           **opts: Any) -> Inversion:
    """Return the Inversion of x0 [B, D] under `cond`: the trajectory and latents that regenerate it.

    method: "masked" (Alg. 1; steps default MASKED_STEPS) or "multinomial" (Alg. 2; steps = the
    transition schedule's T, default 100). opts: masked — mask_schedule ("linear", "cosine", "root",
    "arccos", "cubic"), noise ("uniform" | "mask"), margin (LAI); multinomial — schedule (a
    MultinomialSchedule), margin. Defaults: `dicelib.core.settings.InvertSettings`.
    pseudo_inverse="model" also sets `mismatch_rate` and `reconstruction_error_rate` (see Inversion); the
    latter runs the reconstruction alongside: up to one more forward pass per step, even with store="none".
    """
    k = check_model(model)
    check_choice("method", method, METHODS)
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
         lambda1_end: float = EDIT.lambda1_end, progress: bool = False) -> torch.Tensor:
    """Return the edited tokens [B, D]: regenerate from the inversion under `cond`, guided by its latents.

    lambda1 weighs the latents (the source's information), lambda2 fresh Gumbel noise. With
    cond = the inversion's condition, lambda1 = 1, lambda2 = 0 and additive injection this is the
    input, token for token. Non-uniform `lambda_schedule`s move lambda1 from `lambda1` (noisiest
    step) to `lambda1_end`; lambda2=None means 1 - lambda1 at every step. cfg_scale and
    temperature default (None) to the inversion's values; a (start, end) temperature moves over the steps
    as in `invert` (see `temperature_at`). Defaults: `dicelib.core.settings.EditSettings`.
    """
    if not isinstance(inv, Inversion):
        raise DiceError(f"inv must be a dicelib.Inversion (from dicelib.invert or Inversion.load), got {type(inv).__name__}")
    inv.validate()
    k = check_model(model)
    if k != inv.num_classes:
        raise DiceError(f"the inversion was made with K={inv.num_classes} classes but this model has K={k}")
    d_model = getattr(model, "num_positions", None)
    if d_model is not None and d_model != inv.num_positions:
        raise DiceError(f"the inversion has D={inv.num_positions} positions but this model takes D={d_model}")
    cfg_scale, temperature = check_guidance(inv.cfg_scale if cfg_scale is None else cfg_scale,
                                            inv.temperature if temperature is None else temperature)
    noise_id = int(inv.noise.reshape(-1)[0]) if inv.method == "masked" and inv.noise_kind == "mask" else model.mask_id
    if noise_id != model.mask_id:
        raise DiceError(f"the inversion's noise is [MASK] id {noise_id} but this model's mask_id is {model.mask_id!r}")
    check_lambdas(lambda1, 0.0 if lambda2 is None else lambda2, injection)
    conditions.check_rows(cond, inv.batch_size)
    schedule = lambda_schedule if isinstance(lambda_schedule, LambdaSchedule) else LambdaSchedule(lambda_schedule, lambda1, lambda1_end)
    edit_levels = inv.levels.flip(0)  # editing runs from the noisiest step down
    lambda1s = schedule.values(edit_levels).tolist()
    lambda2s = [resolve_lambda2(v, lambda2) for v in lambda1s]
    for l1, l2 in zip(lambda1s, lambda2s):
        check_lambdas(l1, l2, injection)
    gen = _generator(generator)
    device = model_device(model)
    inv = moved(inv, device)
    cond = conditions.to_device(cond, device)
    traj = TRAJECTORIES[inv.method](inv)
    recompute = inv.store == "none"
    same_guidance = (guidance_weight(cfg_scale), temperature) == (guidance_weight(inv.cfg_scale), inv.temperature)
    target0 = _clean_prediction(model, inv) if recompute and inv.pseudo_inverse == "model" else None

    n = inv.num_edit_steps
    x = traj.state(n - 1)
    for step, i in enumerate(tqdm(range(n - 1, -1, -1), desc="edit", disable=not progress, leave=False)):
        t, temp = levels_for(x, traj.model_level(i)), temperature_at(temperature, i, n)
        if recompute:
            x_inv = traj.state(i)
            if same_guidance:  # one forward pass for the edit and the recomputed inversion rows
                logp, logp_inv = predict_log_probs(model, [(x, t, cond), (x_inv, t, inv.cond)], cfg_scale, temp)
            else:
                logp = predict_log_probs(model, [(x, t, cond)], cfg_scale, temp)[0]
                logp_inv = predict_log_probs(model, [(x_inv, t, inv.cond)], inv.cfg_scale,
                                             temperature_at(inv.temperature, i, n))[0]
            z = _latent(inv, traj, i, traj.yhat(logp_inv, x_inv, i), target0)
        else:
            logp = predict_log_probs(model, [(x, t, cond)], cfg_scale, temp)[0]
            z = inv.latents[i].float()
        yhat = traj.yhat(logp, x, i)
        # no noise to draw where lambda2 = 0 (reconstruction): a quarter of the editing time at large K
        g = gumbel(tuple(yhat.shape), gen, device=device) if lambda2s[step] != 0 else torch.zeros_like(yhat)
        scores = inject(yhat, z, g, lambda1s[step], lambda2s[step], injection)
        x = traj.advance(traj.restrict(scores, i).argmax(-1), i)
    return x


def reconstruct(model: Any, inv: Inversion, progress: bool = False) -> torch.Tensor:
    """Return edit(model, inv, inv.cond, lambda1=1, lambda2=0): the input itself for exact pseudo-inverses."""
    return edit(model, inv, inv.cond, lambda1=1.0, lambda2=0.0, progress=progress)
