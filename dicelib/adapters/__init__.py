"""Real models (diffusers, transformers) wrapped into the `DiscreteDenoiser` protocol.

`amused`, `vq_diffusion` and `paella` (image models, on the shared `base` and `vq_codec`; Paella's
denoiser is our own `paella_net`), `var` (the next-scale VAR: our `var_net` and `var_vae`), `masked_lm` (any transformers masked LM), `hub` (offline loading
from the Hugging Face cache or a folder) and `random_components` (random-weight instances for tests
and benchmarks). May import `core`, `errors`, `io` and `config`, never the tracks. Adapter classes
load lazily: one line per adapter in `_LAZY` (name -> module), so `from dicelib.adapters import
MaskedLM` imports only that adapter's module and `import dicelib.adapters` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MaskedLM": ".masked_lm",
    "VQDiffusion": ".vq_diffusion",
    "Amused": ".amused",
    "Paella": ".paella",
    "PaellaNet": ".paella_net",
    "VAR": ".var",
    "VARNet": ".var_net",
    "VQVAE": ".var_vae",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Return the adapter class `name`, importing its module on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
