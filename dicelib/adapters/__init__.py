"""Adapters that wrap real models into the DiscreteDenoiser protocol (imported lazily: each pulls heavy deps).

One line per adapter in `_LAZY` (name -> module); `from dicelib.adapters import MaskedLM` imports only
that adapter's module, so `import dicelib.adapters` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MaskedLM": ".masked_lm",
    "VQDiffusion": ".vq_diffusion",
    "Amused": ".amused",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Return the adapter class `name`, importing its module on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
