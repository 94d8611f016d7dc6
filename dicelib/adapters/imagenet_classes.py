"""Return ImageNet-1k class ids from ids or names (the shipped list of the 1000 classes; see data/SOURCE.md).

A class has several names (its WordNet lemmas: "tabby, tabby cat"); any of them, in any case, names
it. A name shared by two classes ("crane": the bird 134 and the machine 517) means the class that
lists it first, then the lower id. A name that is no class raises a DiceError with close matches.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import DiceError, is_int

DATA = Path(__file__).resolve().parent / "data" / "imagenet_classes.tsv"
NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def class_names() -> list[list[str]]:
    """Return the names of each class, in class-id order (1000 lists of names)."""
    rows = [line.split("\t") for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [int(r[0]) for r in rows] != list(range(NUM_CLASSES)):
        raise DiceError(f"{DATA} does not list classes 0..{NUM_CLASSES - 1} in order")
    return [[n.strip() for n in r[2].split(",") if n.strip()] for r in rows]


@lru_cache(maxsize=1)
def _index() -> dict[str, int]:
    """Return lowercase name -> class id (a name's first-listed class wins, then the lower id)."""
    index: dict[str, tuple[int, int]] = {}
    for cid, names in enumerate(class_names()):
        for pos, name in enumerate(names):
            key, rank = name.lower(), (pos > 0, cid)
            if key not in index or rank < index[key]:
                index[key] = rank
    return {k: cid for k, (_, cid) in index.items()}


def class_name(cid: int) -> str:
    """Return the first name of class `cid`."""
    return class_names()[cid][0]


def class_id(value: Any, num_classes: int = NUM_CLASSES) -> int:
    """Return the class id of an id (int or digit string) or a class name; else a DiceError listing close names."""
    if is_int(value):
        cid = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        cid = int(value.strip())
    elif isinstance(value, str):
        key = " ".join(value.strip().lower().split())
        if key in _index():
            return _index()[key]
        close = difflib.get_close_matches(key, list(_index()), n=5, cutoff=0.6)
        hint = (f"close matches: {', '.join(f'{c!r} ({_index()[c]})' for c in close)}" if close
                else "no close match")
        raise DiceError(f"{value!r} is not an ImageNet class name; {hint}; give a class id 0..{num_classes - 1} or "
                        "one of the names in dicelib/adapters/data/imagenet_classes.tsv")
    else:
        raise DiceError(f"a class is an id 0..{num_classes - 1} or an ImageNet class name; got {value!r}")
    if not 0 <= cid < num_classes:
        raise DiceError(f"class id {cid} is out of range; expected 0..{num_classes - 1}")
    return cid
