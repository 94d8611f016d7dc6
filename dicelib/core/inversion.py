"""The `Inversion` record: what editing needs to regenerate an input, with a validated save format."""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ..errors import InversionFileError

FORMAT = "dicelib.Inversion"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


@dataclass
class Inversion:
    """An inverted batch. Latents are indexed by step in noising order (step 1 first).

    Masked method: `levels` are s_1..s_N, the trajectory is x0, `u` and `noise` (masks m_i = u < s_i).
    Multinomial method: `levels` are t / T for t = 1..t0 and `trajectory` holds x_1..x_t0 [t0, B, D].
    `latents` [n, B, D, K'] (K' = K, or K + 1 states for multinomial) is None when store == "none";
    editing then recomputes them from the trajectory, `cond` and `lai_seed`.
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
    temperature: float
    margin: float  # LAI margin
    latents: torch.Tensor | None = None  # [n, B, D, K'] float32 / bfloat16
    u: torch.Tensor | None = None  # masked: [B, D] uniform field
    noise: torch.Tensor | None = None  # masked: [B, D] noise token map
    mask_schedule: str | None = None  # masked
    noise_kind: str | None = None  # masked: "uniform" | "mask"
    trajectory: torch.Tensor | None = None  # multinomial: [t0, B, D] independent q-samples
    alpha_bar: torch.Tensor | None = None  # multinomial schedule [T+1]
    gamma_bar: torch.Tensor | None = None
    lai_seed: int | None = None
    mismatch_rate: float | None = None  # pseudo_inverse="model": share of positions argmax D(x0, 0, c) != x0
    format_version: int = field(default=FORMAT_VERSION)

    @property
    def batch_size(self) -> int:
        return self.x0.shape[0]

    @property
    def num_positions(self) -> int:
        return self.x0.shape[1]

    @property
    def num_edit_steps(self) -> int:
        """Return n, the number of editing steps (N masked, t0 multinomial)."""
        return self.levels.numel()

    def nbytes(self) -> int:
        """Return the bytes held by the tensors of this inversion."""
        return sum(v.numel() * v.element_size() for v in asdict(self).values() if isinstance(v, torch.Tensor))

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
            raise InversionFileError(f"{path} is not a readable dicelib inversion ({type(exc).__name__}: {str(exc)[:200]})") from None
        return cls.from_dict(data, source=str(path))

    def validate(self, source: str = "inversion") -> None:
        """Raise InversionFileError if fields are inconsistent with each other."""
        def bad(msg: str) -> InversionFileError:
            return InversionFileError(f"{source}: {msg}")

        if self.method not in ("masked", "multinomial"):
            raise bad(f"unknown method {self.method!r}")
        if self.store not in ("float32", "bfloat16", "none"):
            raise bad(f"unknown store {self.store!r}")
        if not isinstance(self.x0, torch.Tensor) or self.x0.dim() != 2 or self.x0.dtype != torch.long:
            raise bad("x0 must be a [B, D] long tensor")
        b, d = self.x0.shape
        n = self.levels.numel() if isinstance(self.levels, torch.Tensor) else -1
        if n < 1:
            raise bad("levels must be a non-empty tensor")
        k_states = self.num_classes + (1 if self.method == "multinomial" else 0)
        if self.store != "none":
            if not isinstance(self.latents, torch.Tensor) or tuple(self.latents.shape) != (n, b, d, k_states):
                got = tuple(self.latents.shape) if isinstance(self.latents, torch.Tensor) else None
                raise bad(f"latents have shape {got}, expected {(n, b, d, k_states)}")
        if self.method == "masked":
            for name in ("u", "noise"):
                v = getattr(self, name)
                if not isinstance(v, torch.Tensor) or tuple(v.shape) != (b, d):
                    raise bad(f"{name} must be a [B, D] = {[b, d]} tensor")
        else:
            if not isinstance(self.trajectory, torch.Tensor) or tuple(self.trajectory.shape) != (n, b, d):
                raise bad(f"trajectory must have shape {(n, b, d)}")
            for name in ("alpha_bar", "gamma_bar"):
                v = getattr(self, name)
                if not isinstance(v, torch.Tensor) or v.dim() != 1 or v.numel() != self.steps + 1:
                    raise bad(f"{name} must be a [T + 1] = [{self.steps + 1}] tensor")
        if self.pseudo_inverse == "lai" and self.store == "none" and self.lai_seed is None:
            raise bad("an LAI inversion stored with store='none' needs its lai_seed")


def moved(inv: Inversion, device: torch.device) -> Inversion:
    """Return a shallow copy of `inv` with its tensors (not cond's) on `device`."""
    from dataclasses import replace

    from .conditions import to_device

    changes = {f.name: getattr(inv, f.name).to(device) for f in fields(inv)
               if isinstance(getattr(inv, f.name), torch.Tensor) and f.name not in ("alpha_bar", "gamma_bar", "levels")}
    changes["cond"] = to_device(inv.cond, device)
    return replace(inv, **changes)
