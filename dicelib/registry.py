"""Return image models by name (real adapters, random-weight ones, the embedded `shapes`) with their settings.

Every model returned by `load_model` follows the DiscreteDenoiser protocol and also has
`encode_image(images) -> x0 [B, D]`, `decode(x) -> images [B, 3, H, W] in [0, 1]`,
`encode_prompt(prompts) -> cond`, `method` ("masked" | "multinomial"), `noise` (masked only) and
`image_size`. Names: the entries of REGISTRY, or "<family>:<path>" (e.g. "amused:/data/amused-256",
"paella:/data/paella", "shapes:models/shapes-small.pt", "var:/data/var") for a checkpoint outside the Hugging Face cache
or models/. VAR models (`var-d16` ... `var-d30`, `random-var`) follow the NextScaleDenoiser protocol instead
(`method` "next_scale"; token maps per scale).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from .adapters.amused import Amused
from .adapters.paella import Paella
from .adapters.vq_diffusion import VQDiffusion
from .core.settings import EDIT, EditSettings
from .errors import DiceError, check_device
from .image.shapes_image_model import ShapesImageModel


@dataclass(frozen=True)
class ModelSpec:
    """How to load one model and the settings that suit it (paper Table 7 where it has them)."""

    name: str
    family: str  # "amused" | "paella" | "vq-diffusion" | "shapes"
    loader: Callable[[str, torch.device | None], Any]  # (name or folder, device) -> model
    settings: EditSettings = EDIT  # the library's defaults with this model's values (the CLI's defaults)
    description: str = ""
    methods: tuple[str, ...] = ()  # the methods this model serves (empty: its settings' method alone)
    # methods served by another wrapper of the same model: (method, loader, settings), e.g. shapes-oracle's next_scale
    variants: tuple[tuple[str, Callable[[str, torch.device | None], Any], EditSettings], ...] = ()

    def served(self) -> tuple[str, ...]:
        """Return the methods `--method` accepts for this model (the default first)."""
        return self.methods or (self.settings.method,)


def _amused(source: str, device: torch.device | None) -> Any:
    from .adapters.amused import Amused

    return Amused.from_pretrained(source, device=device)


def _paella(source: str, device: torch.device | None) -> Any:
    from .adapters.paella import Paella

    return Paella.from_pretrained(None if source == "paella" else source, device=device)


def _vq_diffusion(source: str, device: torch.device | None) -> Any:
    from .adapters.vq_diffusion import VQDiffusion

    return VQDiffusion.from_pretrained(source, device=device)


def _random_amused(source: str, device: torch.device | None) -> Any:
    from .adapters.random_components import random_amused

    return random_amused("tiny", device=device)


def _random_paella(source: str, device: torch.device | None) -> Any:
    from .adapters.random_components import random_paella

    return random_paella("tiny", device=device)


def _random_vq_diffusion(source: str, device: torch.device | None) -> Any:
    from .adapters.random_components import random_vq_diffusion

    return random_vq_diffusion("tiny", device=device)


def _var(source: str, device: torch.device | None) -> Any:
    from .adapters.var import VAR, registry_depth

    depth = registry_depth(source)  # "var-d20" -> 20; None for a folder (its var_config.json's depth, else 16)
    if depth is None:
        return VAR.from_pretrained(source, device=device)
    return VAR.from_pretrained(None, depth=depth, device=device, name=source)


def _random_var(source: str, device: torch.device | None) -> Any:
    from .adapters.random_components import random_var

    return random_var("tiny", device=device)


def _shapes(source: str, device: torch.device | None) -> Any:
    from .image.shapes_image_model import load_shapes_image_model

    return load_shapes_image_model(None if source == "shapes" else source, device=device)


def _shapes_oracle(source: str, device: torch.device | None) -> Any:
    from .image.shapes_oracle import ShapesOracle

    return ShapesImageModel(ShapesOracle(), name="shapes-oracle")  # exact: no weights, computes on the CPU


def _shapes_oracle_next_scale(source: str, device: torch.device | None) -> Any:
    from .image.shapes_next_scale_model import ShapesNextScaleImageModel

    return ShapesNextScaleImageModel()  # the pyramid's exact next-scale posteriors (CPU)


# Each model's method, noise and guidance come from its class; tau and lambda from the paper's Table 7
# (lambda2 = 1 - lambda1 in every row). lai everywhere: with onehot the latents (±70 logits) dominate
# any lambda1 > 0 and edits barely move.
# Paella's row: 32 steps, CFG 10, lambda1 0.7 / lambda2 0.3 (the library's lambda1, lambda2 = 1 - lambda1),
# tau 0.9. The authors' scripts run instead CFG 8, lambda2 0.9, tau 0.75, temperature 0.2 -> 1.2 over
# inversion and 1.2 -> 0.2 over editing (`temperature=(0.2, 1.2)` in invert), attention weights 1.2 (ByT5) / 0.4 (CLIP: the adapter's
# default), seed 42.
_PAELLA = EditSettings(method=Paella.method, noise=Paella.noise, steps=32, cfg_scale=Paella.default_cfg, tau=0.9,
                       pseudo_inverse="lai")
_MASKED = replace(_PAELLA, method=Amused.method, noise=Amused.noise, steps=None,
                  cfg_scale=Amused.default_cfg)  # aMUSEd has no row: Paella's, with [MASK] noise
_MULTINOMIAL = EditSettings(method=VQDiffusion.method, cfg_scale=VQDiffusion.default_cfg, lambda1=0.2,
                            pseudo_inverse="lai")  # VQ-Diffusion's row (tau 1: the library's)
_SHAPES = EditSettings(method=ShapesImageModel.method, noise=ShapesImageModel.noise,
                       cfg_scale=ShapesImageModel.default_cfg, tau=0.8, pseudo_inverse="lai")  # notebook 03's regime
# VAR (next_scale): VAR's published sampling guidance (cfg 1.5, the README's FID setting, with its linear ramp);
# from the public VARIN re-implementation on HART: LAI margin 18, lambda1 fading linearly 1 -> 0 over the edited
# scales (lambda2 = 1 - lambda1), start at scale 6 of HART's 14, here 4 of VAR's 10 (the same fraction; not tuned).
_VAR = EditSettings(method="next_scale", cfg_scale=1.5, cfg_schedule="linear", pseudo_inverse="lai", margin=18.0,
                    lambda1=1.0, lambda_schedule="linear", lambda1_end=0.0, start_scale=4)
FAMILIES = {"amused": (_amused, _MASKED), "paella": (_paella, _PAELLA), "vq-diffusion": (_vq_diffusion, _MULTINOMIAL),
            "shapes": (_shapes, _SHAPES), "var": (_var, _VAR)}

REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add `spec` to the registry (replacing an entry of the same name); return it."""
    REGISTRY[spec.name] = spec
    return spec


for _name in ("amused/amused-256", "amused/amused-512"):
    register(ModelSpec(_name, "amused", _amused, _MASKED, "aMUSEd masked image model (HF cache)"))
register(ModelSpec("paella", "paella", _paella, _PAELLA,
                   "Paella v3 (dome272/Paella + google/byt5-xl + CLIP ViT-H/14 text, HF cache)"))
register(ModelSpec("microsoft/vq-diffusion-ithq", "vq-diffusion", _vq_diffusion, _MULTINOMIAL,
                   "VQ-Diffusion ITHQ multinomial diffusion (HF cache)"))
register(ModelSpec("random-amused", "amused", _random_amused, _MASKED, "tiny random-weight aMUSEd (tests, demos)"))
register(ModelSpec("random-paella", "paella", _random_paella, _PAELLA, "tiny random-weight Paella (tests, demos)"))
register(ModelSpec("random-vq-diffusion", "vq-diffusion", _random_vq_diffusion, _MULTINOMIAL,
                   "tiny random-weight VQ-Diffusion (tests, demos)"))
for _depth in (16, 20, 24, 30):
    register(ModelSpec(f"var-d{_depth}", "var", _var, _VAR,
                       f"VAR-d{_depth} next-scale ImageNet 256 px (FoundationVision/var var_d{_depth}.pth + VAE, HF cache)"))
register(ModelSpec("random-var", "var", _random_var, replace(_VAR, start_scale=1),  # 4 scales: keep the 1x1 one
                   "tiny random-weight VAR (next-scale; tests, demos)"))
register(ModelSpec("shapes", "shapes", _shapes, _SHAPES, "the embedded ShapesBench model (models/shapes.pt)",
                   methods=("masked", "multinomial")))
# next_scale on shapes-oracle: VARIN on the ShapesBench pyramid (sides 1, 2, 4, 8, 12, 14, 15, 16), the settings notebook
# 06 chooses on val (reports/tables/next_scale_settings.md: lai, margin 1, lambda1 0.9, start scale 4 — the 1x1 to 8x8
# maps are kept, 12x12 to 16x16 regenerated)
_SHAPES_NEXT_SCALE = EditSettings(method="next_scale", cfg_scale=None, pseudo_inverse="lai", margin=1.0, lambda1=0.9,
                                  start_scale=4)
register(ModelSpec("shapes-oracle", "shapes", _shapes_oracle, replace(_SHAPES, cfg_scale=None),  # exact: guidance only hurts
                   "the exact Bayes denoiser of ShapesBench (enumerates scenes; no checkpoint)",
                   methods=("masked", "multinomial", "next_scale"),
                   variants=(("next_scale", _shapes_oracle_next_scale, _SHAPES_NEXT_SCALE),)))


# Masked language models (`dicelib edit-text`): the masked method with [MASK] noise, the paper's RoBERTa row
# (Table 7: 32 steps, tau 0.7, lambda1 0.2, lambda2 0.8), LAI latents (exact reconstruction, and edits that move;
# onehot's +-70-logit latents hold the source against any lambda1 above a few hundredths).
TEXT_SETTINGS = EditSettings(method="masked", noise="mask", steps=32, tau=0.7, pseudo_inverse="lai", lambda1=0.2,
                             lambda2=0.8)
TEXT_MODELS = {"text": "the embedded BERT masked LM (models/text_mlm/, `dvc repro train-text`)",
               "roberta-base": "RoBERTa base, the paper's text model (HF cache)"}


def get_spec(name: str) -> ModelSpec:
    """Return the spec for a registry name or "<family>:<path>"; unknown names raise a DiceError listing the choices."""
    if name in REGISTRY:
        return REGISTRY[name]
    family, sep, folder = name.partition(":")
    if sep and family in FAMILIES and folder:
        loader, settings = FAMILIES[family]
        return ModelSpec(folder, family, loader, settings, f"{family} from {folder}")
    choices = ", ".join(sorted(REGISTRY)) + ", or " + " | ".join(f"{f}:<path>" for f in FAMILIES)
    raise DiceError(f"unknown model {name!r}; expected one of {choices}")


def load_model(name: str, device: str | torch.device | None = None, method: str | None = None) -> tuple[Any, ModelSpec]:
    """Return (model, spec) for `name` (served for `method` when given); MissingWeightsError when its weights are
    not on disk; a DiceError when it does not serve `method`."""
    spec = get_spec(name)
    check_device(device)
    if method is not None and method not in spec.served() and method == "next_scale":
        raise DiceError(f"model {name!r} serves {', '.join(spec.served())}, not {method!r}; "
                        f"next_scale models: {', '.join(n for n, s in REGISTRY.items() if 'next_scale' in s.served())}")
    for served, loader, settings in spec.variants:
        if served == method:
            spec = replace(spec, loader=loader, settings=settings)
    return spec.loader(spec.name, None if device is None else torch.device(device)), spec
