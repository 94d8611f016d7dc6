"""The `Inversion` record: what editing needs to regenerate an input, with a validated save format."""

from __future__ import annotations

import math
import os
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from . import conditions
from ..errors import DiceError, InversionFileError, check_choice
from .checks import check_number, check_range, check_tensor
from .guidance import check_guidance
from .masked import NOISE_KINDS
from .multinomial import grid_timesteps
from .pseudo_inverse import PSEUDO_INVERSES, STORES, check_margin
from .schedules import MASK_SCHEDULES, check_steps, check_tau
from .transitions import MultinomialSchedule

FORMAT = "dicelib.Inversion"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
METHODS = ("masked", "multinomial", "next_scale")
CFG_SCHEDULES = ("constant", "linear")  # next_scale: guidance weight per scale (see next_scale.scale_guidance)
FLOATS = (torch.float64, torch.float32)


@dataclass
class Inversion:
    """An inverted batch. Latents are indexed by step in noising order (step 1 first).

    Masked method: `levels` are s_1..s_N, the trajectory is x0, `u` and `noise` (masks m_i = u < s_i).
    Multinomial method: `levels` are t / T on the timestep grid t = s_1 < ... < s_n = t0 (every t in 1..t0
    when steps = T; fewer steps skip timesteps) and `trajectory` holds x_{s_1}..x_{s_n} [n, B, D].
    `latents` [n, B, D, K'] (K' = K, or K + 1 states for multinomial) is None when store == "none";
    editing then recomputes them from the trajectory, `cond` and `lai_seed`.
    Next-scale method: `x0` [B, D] is the S token maps flattened row-major and concatenated coarse to
    fine (D = sum h_k w_k; `x0_maps` splits it back), `scales` [S, 2] their (h, w), `latents` [B, D, K]
    the latent z_k of every scale in the same layout, `steps` = S, `tau` = 1 and `levels` = [1/S, ..., 1]
    (scale k at index S - 1 - k: the coarsest scale is the first edited, like the noisiest step).
    """

    method: str  # "masked" | "multinomial"
    pseudo_inverse: str  # "onehot" | "model" | "lai"
    store: str  # "float32" | "bfloat16" | "none"
    num_classes: int  # K of the model that was inverted
    x0: torch.Tensor  # [B, D] long
    cond: Any  # the inversion condition, one per row
    levels: torch.Tensor  # [n] float64, noise level of each step
    steps: int  # N (masked) or T (multinomial)
    tau: float
    cfg_scale: float | None
    temperature: float | tuple[float, float]  # or (start, end): see guidance.temperature_at
    margin: float  # LAI margin
    latents: torch.Tensor | None = None  # [n, B, D, K'] float32 / bfloat16
    u: torch.Tensor | None = None  # masked: [B, D] uniform field
    noise: torch.Tensor | None = None  # masked: [B, D] noise token map
    mask_schedule: str | None = None  # masked
    noise_kind: str | None = None  # masked: "uniform" | "mask"
    trajectory: torch.Tensor | None = None  # multinomial: [n, B, D] independent q-samples on the grid
    alpha_bar: torch.Tensor | None = None  # multinomial schedule [T+1]
    gamma_bar: torch.Tensor | None = None
    lai_seed: int | None = None
    scales: torch.Tensor | None = None  # next_scale: [S, 2] long, (h, w) per scale, coarse to fine
    cfg_schedule: str | None = None  # next_scale: "constant" | "linear" guidance weight over the scales
    # pseudo_inverse="model" only. mismatch_rate: share of positions where argmax D(x0, 0, c) != x0 (the
    # target's own errors). reconstruction_error_rate: share of positions reconstruct() gets wrong, in every
    # store mode; it differs because a wrong token changes the states, so the predictions, of later steps.
    mismatch_rate: float | None = None
    reconstruction_error_rate: float | None = None
    format_version: int = field(default=FORMAT_VERSION)

    @property
    def batch_size(self) -> int:
        return self.x0.shape[0]

    @property
    def num_positions(self) -> int:
        return self.x0.shape[1]

    @property
    def num_scales(self) -> int:
        """Return S, the number of token maps of a next_scale inversion."""
        return self.scales.shape[0]

    @property
    def x0_maps(self) -> list[torch.Tensor]:
        """Return a next_scale inversion's source as its S token maps, each [B, h_k * w_k] (views of x0)."""
        return list(self.x0.split(scale_sizes(self.scales), dim=1))

    @property
    def num_edit_steps(self) -> int:
        """Return n, the number of editing steps (N masked, the timestep grid's size multinomial)."""
        return self.levels.numel()

    def nbytes(self) -> int:
        """Return the bytes held by the tensors of this inversion."""
        values = (getattr(self, f.name) for f in fields(self))  # not asdict: it deep-copies every tensor
        return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))

    def to_dict(self) -> dict[str, Any]:
        """Return a plain dict of tensors and Python values (loadable with weights_only=True)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["format"] = FORMAT
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the inversion to `path` atomically (a temp file renamed into place); return the path."""
        from .atomic import atomic_write

        return atomic_write(Path(path), lambda f: torch.save(self.to_dict(), f), mode="wb")

    @classmethod
    def from_dict(cls, data: Any, source: str = "data") -> "Inversion":
        """Return an Inversion from `to_dict` output after validating keys, version and shapes."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InversionFileError(f"{source} is not a dicelib inversion (no '{FORMAT}' marker)")
        version = data.get("format_version")
        if version not in SUPPORTED_VERSIONS:
            raise InversionFileError(f"{source} has inversion format version {version!r}; this dicelib reads {SUPPORTED_VERSIONS}")
        names = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls)
                   if f.default is MISSING and f.default_factory is MISSING and f.name not in data]
        if missing:
            raise InversionFileError(f"{source} is missing inversion fields: {', '.join(missing)}")
        inv = cls(**{k: v for k, v in data.items() if k in names})
        inv.validate(source)
        return inv

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> "Inversion":
        """Return the inversion saved at `path`; raise InversionFileError if it is missing, corrupt or foreign."""
        path = Path(path)
        if not path.is_file():
            raise InversionFileError(f"no saved inversion at {path}")
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch raises many types for truncated or foreign files
            if re.search(r"GLOBAL [\w.]*\bInversion\b", str(exc)):  # torch.save(inv): the object itself, pickled
                raise InversionFileError(
                    f"{path} holds a pickled Inversion object (written with torch.save(inv)), which loading would have to "
                    "run as code; save inversions with Inversion.save: inv.save(path). To convert a file you trust: "
                    "torch.load(path, weights_only=False).save(new_path)") from None
            raise InversionFileError(f"{path} is not a readable dicelib inversion ({type(exc).__name__}: {str(exc)[:200]})") from None
        return cls.from_dict(data, source=str(path))

    def validate(self, source: str = "inversion") -> None:
        """Return None if every field has its type, shape, range and finite values; else raise an
        InversionFileError naming `source` and the field. Load and edit call it: one pass over each
        tensor (min and max), no copies."""
        try:
            self._check_fields()
        except DiceError as err:
            raise InversionFileError(f"{source}: {err}") from None

    def _check_fields(self) -> None:
        """Return None if the fields are valid (see `validate`), else raise a DiceError naming the first bad one."""
        check_choice("method", self.method, METHODS)
        check_choice("pseudo_inverse", self.pseudo_inverse, PSEUDO_INVERSES)
        check_choice("store", self.store, STORES)
        k = check_number("num_classes", self.num_classes, "an int >= 2", lambda v: v >= 2, integer=True)
        steps = check_steps(self.steps)
        check_tau(self.tau)
        check_guidance(self.cfg_scale, self.temperature)
        check_margin(self.margin)
        if self.lai_seed is not None:
            check_number("lai_seed", self.lai_seed, "None or an int", integer=True)
        elif self.pseudo_inverse == "lai" and self.store == "none":
            raise DiceError("an LAI inversion stored with store='none' needs its lai_seed")
        for name in ("mismatch_rate", "reconstruction_error_rate"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), "None or a number in [0, 1]", lambda v: 0 <= v <= 1)
        b, d = check_tensor("x0", self.x0, (None, None), "[B, D]", torch.long).shape
        check_range("x0", self.x0, 0, k - 1, f"class ids 0..{k - 1} (K = {k})")
        conditions.check_rows(self.cond, b)
        n = check_tensor("levels", self.levels, (None,), "[n]", *FLOATS).numel()
        check_range("levels", self.levels, 0, 1, "noise levels in (0, 1]")
        if not bool((torch.diff(self.levels, prepend=self.levels.new_zeros(1)) > 0).all()):
            raise DiceError(f"levels must increase strictly from above 0 (s_1 < ... < s_n), got {self.levels.tolist()}")
        if n > steps or (self.method != "multinomial" and n != steps):
            raise DiceError(f"levels has {n} steps but steps is {steps} (masked, next_scale: equal; multinomial: at most T)")
        if self.store != "none":
            states = k + (self.method == "multinomial")
            dtype = torch.bfloat16 if self.store == "bfloat16" else torch.float32
            if self.method == "next_scale":
                check_tensor("latents", self.latents, (b, d, k), f"[B, D, K] = {[b, d, k]}", dtype)
            else:
                check_tensor("latents", self.latents, (n, b, d, states), f"[n, B, D, K'] = {[n, b, d, states]}", dtype)
            check_range("latents", self.latents, -math.inf, math.inf, "finite values")
        if self.method == "next_scale":
            scales = check_tensor("scales", self.scales, (steps, 2), f"[S, 2] = {[steps, 2]} (h, w per scale)", torch.long)
            check_range("scales", scales, 1, math.inf, "map sizes h, w >= 1")
            if sum(scale_sizes(scales)) != d:
                raise DiceError(f"scales {scales.tolist()} hold {sum(scale_sizes(scales))} tokens but x0 has D={d}")
            check_choice("cfg_schedule", self.cfg_schedule, CFG_SCHEDULES)
            if self.tau != 1.0 or not torch.equal(self.levels, next_scale_levels(steps).to(self.levels)):
                raise DiceError(f"a next_scale inversion has tau = 1 and levels [1/S, ..., 1], got tau {self.tau}, "
                                f"levels {self.levels.tolist()}")
        elif self.method == "masked":
            check_choice("mask schedule", self.mask_schedule, tuple(MASK_SCHEDULES))
            check_choice("noise kind", self.noise_kind, NOISE_KINDS)
            check_range("u", check_tensor("u", self.u, (b, d), f"[B, D] = {[b, d]}", *FLOATS), 0, 1, "uniform draws in [0, 1)")
            noise = check_tensor("noise", self.noise, (b, d), f"[B, D] = {[b, d]}", torch.long)
            if self.noise_kind == "uniform":
                check_range("noise", noise, 0, k - 1, f"token ids 0..{k - 1} (uniform noise)")
            else:  # the model's [MASK] id at every position
                mask_id = max(int(noise.reshape(-1)[0]), 0)
                check_range("noise", noise, mask_id, mask_id, "one [MASK] id >= 0 at every position (noise kind 'mask')")
        else:
            traj = check_tensor("trajectory", self.trajectory, (n, b, d), f"[n, B, D] = {[n, b, d]}", torch.long)
            check_range("trajectory", traj, 0, k, f"states 0..{k} (K tokens and [MASK] = {k})")
            for name in ("alpha_bar", "gamma_bar"):
                values = check_tensor(name, getattr(self, name), (steps + 1,), f"[T + 1] = [{steps + 1}]", *FLOATS)
                check_range(name, values, 0, 1, "probabilities in [0, 1]")
            MultinomialSchedule(self.alpha_bar, self.gamma_bar)  # identity at index 0, alpha_bar + gamma_bar <= 1
            grid_timesteps(self.levels, steps)  # levels on the timestep grid t / T


def scale_sizes(scales: torch.Tensor | list) -> list[int]:
    """Return the number of tokens h * w of each scale, coarse to fine."""
    return [int(h) * int(w) for h, w in (scales.tolist() if isinstance(scales, torch.Tensor) else scales)]


def next_scale_levels(num_scales: int) -> torch.Tensor:
    """Return a next_scale inversion's `levels`: [1/S, 2/S, ..., 1] float64 (one per scale, finest first)."""
    return torch.arange(1, num_scales + 1, dtype=torch.float64) / num_scales


def moved(inv: Inversion, device: torch.device) -> Inversion:
    """Return a shallow copy of `inv` with its tensors (not cond's) on `device`."""
    from dataclasses import replace

    changes = {f.name: getattr(inv, f.name).to(device) for f in fields(inv)
               if isinstance(getattr(inv, f.name), torch.Tensor) and f.name not in ("alpha_bar", "gamma_bar", "levels", "scales")}
    changes["cond"] = conditions.to_device(inv.cond, device)
    return replace(inv, **changes)
