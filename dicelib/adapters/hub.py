"""Return local Hugging Face snapshots and components, or raise MissingWeightsError (never download).

Adapters load real models only from what is already on disk: a local folder, or the Hugging Face
cache (`~/.cache/huggingface/hub`, or `$HF_HOME`). `local_files_only=True` everywhere means a
machine without the weights gets one clear error at once instead of a network timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import DiceError, MissingWeightsError


def missing_weights_message(repo_id: str, detail: str = "", downloads: list[str] | None = None,
                            folder: str = "a local folder that holds the model's subfolders") -> str:
    """Return the message for absent weights: the model id, what is missing, and how to fetch it.

    `downloads` are the `huggingface-cli download` arguments that fetch what is missing (default:
    the id); `folder` says what a local folder given instead must hold.
    """
    extra = f" ({detail})" if detail else ""
    downloads = downloads or [repo_id]
    fetch = " and ".join(f"`huggingface-cli download {d}`" for d in downloads)
    alt = f"`hf download {downloads[0]}`" if len(downloads) == 1 else "`hf download ...`"
    return (
        f"weights for {repo_id!r} are not in the local Hugging Face cache{extra}. "
        f"On a machine with network run {fetch} (or {alt}), "
        "copy ~/.cache/huggingface/hub here if needed, then work offline with HF_HUB_OFFLINE=1; "
        f"or pass {folder} instead of the id"
    )


def resolve_snapshot(repo_id: str | Path) -> Path:
    """Return the local folder of `repo_id` (a folder path, or a model id found in the HF cache)."""
    path = Path(repo_id).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(str(repo_id), local_files_only=True))
    except HFValidationError as err:
        raise DiceError(f"{str(repo_id)!r} is neither a local folder nor a valid Hugging Face model id") from err
    except (OSError, ValueError) as err:  # LocalEntryNotFoundError is an OSError
        raise MissingWeightsError(missing_weights_message(str(repo_id))) from err


def load_component(cls: Any, root: Path, subfolder: str, repo_id: str, **kwargs: Any) -> Any:
    """Return `cls.from_pretrained(root/subfolder)` offline; a missing or broken part -> MissingWeightsError."""
    folder = Path(root) / subfolder
    if not folder.is_dir():
        raise MissingWeightsError(missing_weights_message(repo_id, f"subfolder {subfolder!r} is missing"))
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(
            missing_weights_message(repo_id, f"{subfolder!r} could not be loaded: {str(err).splitlines()[0]}")
        ) from err


def default_device(device: str | torch.device | None = None) -> torch.device:
    """Return `device`, or CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def place(module: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """Return `module` moved to `device` (and cast to `dtype` only when it differs: diffusers warns on every cast)."""
    module = module.to(device)
    if dtype is not None and getattr(module, "dtype", dtype) != dtype:
        module = module.to(dtype)
    return module.eval()
