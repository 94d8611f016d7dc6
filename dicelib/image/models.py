"""Return the two ShapesBench denoisers the image notebooks compare, by registry name, with how each is run.

- `shapes-oracle`: the exact Bayes denoiser (`shapes_oracle.ShapesOracle`): what DICE does with a
  perfect model. Run without guidance: its posteriors are exact already, and its null prompt
  (a factorised sum over every scene) costs about 50x its prompted call.
- `shapes`: the learned network (`models/shapes.pt`, `shapes_model`): what model error adds.

Each has a short `label` used in metric file names, table columns and figure titles, and the
sampler order of its regeneration baselines (the stronger one for that model: DICE Alg. 1's own
order for the oracle, MaskGIT's confidence order for the learned model, whose Alg. 1 samples are blobs).
The registry (`dicelib.registry`, for the CLI) loads the same two models wrapped with image I/O.
"""

from __future__ import annotations

from typing import Any

from ..errors import DiceError, choice

IMAGE_MODELS = ("shapes-oracle", "shapes")  # the order of every table and figure: perfect model first
LABELS = {"shapes-oracle": "oracle", "shapes": "learned"}
NO_GUIDANCE = ("shapes-oracle",)  # models run with cfg_scale None whatever the stage's cfg_scale
REGENERATION_ORDERS = {"shapes-oracle": "resample", "shapes": "confidence"}
MODEL = choice(IMAGE_MODELS)  # params rule of one model name


def load(name: str) -> Any:
    """Return the bare DiscreteDenoiser `name` (with `.config.prompt_len`), as the notebooks use it."""
    if name == "shapes-oracle":
        from .shapes_oracle import ShapesOracle

        return ShapesOracle()
    if name == "shapes":
        from . import shapes_model

        return shapes_model.load()
    raise DiceError(f"unknown ShapesBench model {name!r}; expected one of {', '.join(IMAGE_MODELS)}")


def load_all(names: list[str]) -> dict[str, Any]:
    """Return {name: denoiser} for `names`, in IMAGE_MODELS order (perfect model first)."""
    unknown = [n for n in names if n not in IMAGE_MODELS]
    if unknown or not names:
        raise DiceError(f"models must be a non-empty list of {', '.join(IMAGE_MODELS)}; got {names!r}")
    return {n: load(n) for n in IMAGE_MODELS if n in names}


def label(name: str) -> str:
    """Return the short label of model `name` ("oracle", "learned")."""
    return LABELS.get(name, name)


def guidance(name: str, cfg_scale: float | None) -> float | None:
    """Return the guidance scale model `name` runs with: None for NO_GUIDANCE models, else `cfg_scale`."""
    return None if name in NO_GUIDANCE else cfg_scale
