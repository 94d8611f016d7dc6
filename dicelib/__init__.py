"""dicelib: discrete inversion for controllable editing (DICE) of masked generative models,
multinomial diffusion and masked language models.

    inv = dicelib.invert(model, x0, cond, method="masked", steps=32, tau=1.0, pseudo_inverse="onehot")
    x = dicelib.edit(model, inv, cond_target, lambda1=0.7)        # lambda2=None: 1 - lambda1
    xs = dicelib.edit_grid(model, inv, [{"lambda1": v} for v in (0.5, 0.9)], conds=[cond_target] * 2)  # one pass per step
    inv = dicelib.invert(next_scale_model, maps, cond, method="next_scale", pseudo_inverse="lai")  # VARIN: S token maps
    maps2 = dicelib.edit(next_scale_model, inv, cond_target, lambda1=0.7, start_scale=2)

Subpackages: `core` (the method), `adapters` (real models), `image` and `text` (the two tracks on
the embedded models), `piebench` (the PIE-Bench experiment), `analysis` (notebook 01); top-level
modules `errors`, `config` (paths), `io` (atomic writes), `registry` (models by name), `sweep`
(sweeps on this machine or a Ray cluster) and `cli`.
Only `core` is imported eagerly; the others load on first attribute access (`dicelib.adapters`),
so `import dicelib` pulls in neither transformers nor diffusers.
"""

import importlib
from typing import Any

from .core.api import edit, edit_grid, invert, reconstruct
from .core.inversion import Inversion
from .core.next_scale_baselines import regenerate_next_scale, target_only_edit
from .core.protocol import DiscreteDenoiser, NextScaleDenoiser
from .core.schedules import LambdaSchedule
from .core.settings import EditSettings, InvertSettings
from .core.transitions import MultinomialSchedule
from .errors import DiceError, InversionFileError, MissingWeightsError

_SUBMODULES = ("adapters", "analysis", "cli", "config", "image", "io", "piebench", "registry", "sweep", "text")

__all__ = [
    "DiceError",
    "DiscreteDenoiser",
    "EditSettings",
    "Inversion",
    "InversionFileError",
    "InvertSettings",
    "LambdaSchedule",
    "MissingWeightsError",
    "MultinomialSchedule",
    "NextScaleDenoiser",
    "edit",
    "edit_grid",
    "invert",
    "reconstruct",
    "regenerate_next_scale",
    "target_only_edit",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Return the subpackage or module `name` (dicelib.adapters, dicelib.image, ...), importing it on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
