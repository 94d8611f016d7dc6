"""Return PIE-Bench editing cases from its `mapping_file.json` layout (prompts, [bracketed] words, RLE masks).

PIE-Bench (Ju et al. 2023, "Direct Inversion"): 700 images of 512x512 in 10 folders
(`annotation_images/<id>_<type>_<count>/…`): 0 random plus 9 edit types. Each entry of
`mapping_file.json` gives the image path, `original_prompt`, `editing_prompt` (the words that
change are in [brackets]), `editing_instruction`, `editing_type_id`, `blended_word` (source and
target word, for blended editing) and `mask`: a run-length encoding of the edit region as a flat
list [start, length, start, length, …] over the row-major pixels. The benchmark's evaluation also
marks the one-pixel image border as edited (to absorb annotation errors at the border); `mask()`
does the same unless `border=False`. Users download the benchmark themselves; nothing here fetches it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..errors import DiceError

EDIT_TYPES = {
    0: "random", 1: "change object", 2: "add object", 3: "delete object", 4: "change attribute (content)",
    5: "change attribute (pose)", 6: "change attribute (color)", 7: "change attribute (material)",
    8: "change background", 9: "change style",
}
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def parse_prompt(prompt: str) -> tuple[str, tuple[str, ...]]:
    """Return (the prompt without brackets, the bracketed phrases) of a PIE-Bench prompt."""
    words = tuple(w.strip() for w in _BRACKETS.findall(prompt))
    clean = " ".join(_BRACKETS.sub(lambda m: m.group(1), prompt).split())
    return clean, words


def decode_rle(rle: Iterable[int], shape: tuple[int, int], border: bool = True) -> np.ndarray:
    """Return the boolean mask [H, W] of PIE-Bench's [start, length, …] encoding (runs are clipped to the image)."""
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    values = [int(v) for v in rle]
    if len(values) % 2:
        raise DiceError(f"an RLE mask needs [start, length] pairs; got {len(values)} numbers")
    for start, length in zip(values[::2], values[1::2]):
        if start < 0 or length < 0:
            raise DiceError(f"RLE run ({start}, {length}) has a negative start or length")
        flat[start:start + length] = True
    mask = flat.reshape(shape)
    if border:
        mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
    return mask


def encode_rle(mask: np.ndarray) -> list[int]:
    """Return the [start, length, …] encoding of a boolean mask [H, W] (row-major), inverse of decode_rle."""
    flat = np.concatenate([[False], np.asarray(mask, dtype=bool).reshape(-1), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])  # run starts and ends alternate
    starts, ends = edges[::2], edges[1::2]
    return [int(v) for pair in zip(starts, ends - starts) for v in pair]


@dataclass(frozen=True)
class PieCase:
    """One PIE-Bench editing case."""

    key: str  # the mapping file's id, e.g. "000000000000"
    image_path: Path
    source_prompt: str  # original prompt, brackets removed
    target_prompt: str  # editing prompt, brackets removed
    source_words: tuple[str, ...]  # bracketed phrases of the original prompt
    target_words: tuple[str, ...]  # bracketed phrases of the editing prompt (what changes)
    blended_words: tuple[str, ...]  # `blended_word`: source word, target word (may be empty)
    instruction: str
    edit_type: int  # 0..9, see EDIT_TYPES
    mask_rle: tuple[int, ...]

    @property
    def edit_type_name(self) -> str:
        return EDIT_TYPES[self.edit_type]

    def image_size(self) -> tuple[int, int]:
        """Return (H, W) of the image file (header only)."""
        from PIL import Image

        with Image.open(self.image_path) as im:
            return im.size[1], im.size[0]

    def mask(self, border: bool = True) -> np.ndarray:
        """Return the edit mask [H, W] (bool, True = edited) at the image's own resolution."""
        return decode_rle(self.mask_rle, self.image_size(), border=border)

    def image(self, size: int | None = None) -> torch.Tensor:
        """Return the image [1, 3, H, W] in [0, 1], resized to size x size if given."""
        from ..adapters.vq_codec import load_image

        return load_image(self.image_path, size)


def _case(key: str, entry: dict, root: Path) -> PieCase:
    missing = [f for f in ("image_path", "original_prompt", "editing_prompt", "editing_type_id", "mask") if f not in entry]
    if missing:
        raise DiceError(f"PIE-Bench entry {key!r} lacks {', '.join(missing)}")
    src, src_words = parse_prompt(entry["original_prompt"])
    tgt, tgt_words = parse_prompt(entry["editing_prompt"])
    edit_type = int(entry["editing_type_id"])
    if edit_type not in EDIT_TYPES:
        raise DiceError(f"PIE-Bench entry {key!r} has editing_type_id {edit_type}; expected 0..9")
    return PieCase(key=key, image_path=root / "annotation_images" / entry["image_path"], source_prompt=src,
                   target_prompt=tgt, source_words=src_words, target_words=tgt_words,
                   blended_words=tuple(str(entry.get("blended_word", "")).split()),
                   instruction=str(entry.get("editing_instruction", "")), edit_type=edit_type,
                   mask_rle=tuple(int(v) for v in entry["mask"]))


def load_piebench(root: str | Path, edit_types: Iterable[int] | None = None, limit: int | None = None) -> list[PieCase]:
    """Return the cases under `root` (which holds mapping_file.json and annotation_images/), sorted by key."""
    root = Path(root)
    mapping = root / "mapping_file.json"
    if not mapping.is_file():
        raise DiceError(f"no PIE-Bench mapping file at {mapping}; download PIE-Bench and point to the folder "
                        "that holds mapping_file.json and annotation_images/")
    try:
        data = json.loads(mapping.read_text())
    except json.JSONDecodeError as err:
        raise DiceError(f"{mapping} is not valid JSON: {err}") from err
    wanted = None if edit_types is None else {int(t) for t in edit_types}
    cases = [_case(k, data[k], root) for k in sorted(data)]
    cases = [c for c in cases if wanted is None or c.edit_type in wanted]
    return cases[:limit] if limit is not None else cases


def type_counts(cases: Iterable[PieCase]) -> dict[str, int]:
    """Return the number of cases per edit type name."""
    out: dict[str, int] = {}
    for c in cases:
        out[c.edit_type_name] = out.get(c.edit_type_name, 0) + 1
    return out
