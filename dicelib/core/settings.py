"""The one place where dicelib's inversion and editing defaults are written (SPEC §3).

`dicelib.invert` and `dicelib.edit` take their keyword defaults from `InvertSettings()` and
`EditSettings()`, the masked process and `LambdaSchedule` take theirs from the same instances, and
every other caller (the tracks, the registry's per-model presets, the CLI) builds on these
dataclasses with `dataclasses.replace`, so a default changed here changes everywhere.
`lambda2=None` means `1 - lambda1` at every editing step; no caller computes it by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MASKED_STEPS = 32  # steps of the masked method when `steps` is None (paper: 32)


@dataclass(frozen=True)
class InvertSettings:
    """How `dicelib.invert` builds an inversion."""

    method: str = "masked"  # "masked" (Alg. 1), "multinomial" (Alg. 2) or "next_scale" (VARIN Alg. 2)
    steps: int | None = None  # None: MASKED_STEPS (masked), the transition schedule's T (multinomial)
    tau: float = 1.0  # start level in (0, 1]: how much of the trajectory editing regenerates
    pseudo_inverse: str = "onehot"  # "onehot", "model" or "lai"
    cfg_scale: float | None = None  # classifier-free guidance weight (None: off)
    temperature: float | tuple[float, float] = 1.0  # softmax temperature, or (start, end) over the steps (least noisy first)
    store: str = "float32"  # latents kept as "float32", "bfloat16", or "none" (recomputed while editing)
    noise: str = "uniform"  # masked method's noise map: "uniform" renoising or "mask" ([MASK] absorbing)
    mask_schedule: str = "linear"  # masked method's noise levels: linear, cosine, root, arccos, cubic
    margin: float = 1.0  # LAI margin (pseudo_inverse="lai")
    cfg_schedule: str = "constant"  # next_scale: guidance weight per scale, "constant" or "linear" (VAR/HART ramp)

    def invert_kwargs(self) -> dict[str, Any]:
        """Return dicelib.invert's keyword arguments (each method's own options only for that method)."""
        names = [f.name for f in fields(InvertSettings)]
        kwargs = {name: getattr(self, name) for name in names}
        if self.method != "masked":
            del kwargs["noise"], kwargs["mask_schedule"]
        if self.method == "next_scale":
            del kwargs["steps"], kwargs["tau"]  # it walks the model's scales: no steps, no start level
        else:
            del kwargs["cfg_schedule"]
        return kwargs

    def inversion(self) -> InvertSettings:
        """Return the inversion part alone (a hashable key: edits that share it share one inversion)."""
        return InvertSettings(**{f.name: getattr(self, f.name) for f in fields(InvertSettings)})


@dataclass(frozen=True)
class EditSettings(InvertSettings):
    """An inversion's settings plus how `dicelib.edit` regenerates from it."""

    lambda1: float = 0.7  # weight of the latents (the source's information)
    lambda2: float | None = None  # weight of fresh Gumbel noise (None: 1 - lambda1 at every step)
    injection: str = "add"  # "add", "variance_preserving" or "max"
    lambda_schedule: str = "uniform"  # "uniform", "linear", "exponential" or "mi"
    lambda1_end: float = 1.0  # lambda1 at the last step of non-uniform schedules
    # next_scale: the first scale editing regenerates (scales below it are copied from the source). 0 edits
    # every scale: Alg. 3 as written, the latents alone carry the source. VARIN's HART runs start at
    # 1-based scale 8 of 14 (its Table 3 picks it for Regeneration); pass about S / 2 for that.
    start_scale: int = 0

    def edit_kwargs(self) -> dict[str, Any]:
        """Return dicelib.edit's keyword arguments (guidance and temperature: the inversion's;
        start_scale for the next_scale method only)."""
        edit_only = set(asdict(self)) - {f.name for f in fields(InvertSettings)}
        if self.method != "next_scale":
            edit_only.discard("start_scale")
        return {name: getattr(self, name) for name in sorted(edit_only)}

    def with_given(self, **values: Any) -> EditSettings:
        """Return these settings with every value that is not None in its place (cfg_scale 1 = guidance off: None)."""
        s = replace(self, **{k: v for k, v in values.items() if v is not None})
        return replace(s, cfg_scale=None) if s.cfg_scale is not None and float(s.cfg_scale) == 1.0 else s

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> EditSettings:
        """Return settings from a params.yaml-style dict: the keys that are fields, the rest ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})


def resolve_lambda2(lambda1: float, lambda2: float | None) -> float:
    """Return the noise weight used at a step with latent weight lambda1 (None: 1 - lambda1).

    1 - lambda1 is rounded to 12 decimals so that tables read 0.3, not 0.30000000000000004; the
    difference is far below float32 resolution, so the edit itself is the same.
    """
    return round(1.0 - float(lambda1), 12) if lambda2 is None else float(lambda2)


INVERT = InvertSettings()  # the defaults, read by invert's signature and the masked process
EDIT = EditSettings()  # the defaults, read by edit's signature and LambdaSchedule
