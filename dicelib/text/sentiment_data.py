"""Return the Sentiment Editing pairs (DICE authors, MIT) and their fixed train / val / test split.

The raw file `data/sentiment_editing/text_editing_dataset.json` is vendored verbatim and never
edited. Each pair holds [context, content] for the negative and the positive sentiment; the task
(paper §4.2) inverts the negative content under the negative context and edits it under the
positive context. `python -m dicelib.text.sentiment_data` (DVC stage `text-data`) writes the split: test
(reported numbers only), val (chooses settings: lambda, the structure threshold's check) and
train (the `text` model, the MiniLM judge, the structure threshold), disjoint by pair and by
sentence.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from .. import kernels
from ..config import DATA, ROOT
from ..errors import DiceError, check_choice
from ..io import atomic_write

DATASET_DIR = DATA / "sentiment_editing"
RAW = DATASET_DIR / "text_editing_dataset.json"
SPLIT = DATASET_DIR / "split.json"
SPLITS = ("train", "val", "test", "all")


@dataclass(frozen=True)
class SentimentPair:
    """One Sentiment Editing pair: the negative [context, content] and its positive counterpart."""

    id: int
    neg_context: str  # "Negative Sentiment: <hint>."
    neg_content: str  # the sentence that is inverted (starts with a space, as in the raw file)
    pos_context: str  # "Positive Sentiment: <hint>."
    pos_content: str  # the gold positive sentence (BLEU reference)


def load_raw(path: Path = RAW) -> list[SentimentPair]:
    """Return every pair of the raw file, in id order."""
    if not Path(path).is_file():
        raise DiceError(f"Sentiment Editing data not found at {path}; it is vendored in the repository (git checkout)")
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    pairs = []
    for key in sorted(raw, key=int):
        entry = raw[key]
        (nc, nx), (pc, px) = entry["negative_sentiment"], entry["positive_sentiment"]
        pairs.append(SentimentPair(int(key), nc, nx, pc, px))
    return pairs


def make_split(pairs: list[SentimentPair], test_fraction: float, seed: int,
               val_fraction: float = 0.0) -> dict[str, list[int]]:
    """Return {"train": ids, "val": ids, "test": ids}: a seeded split by pair, duplicates kept on one side.

    A few sentences occur in several pairs; pairs sharing a content sentence form one group, so no
    test (or val) sentence occurs in another split. Test takes the first groups of one seeded
    shuffle, val the next ones, so adding val leaves test as it was.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DiceError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if not 0.0 <= val_fraction < 1.0 - test_fraction:
        raise DiceError(f"val_fraction must be in [0, 1 - test_fraction) = [0, {1 - test_fraction:g}), "
                        f"got {val_fraction!r}")
    parent = {p.id: p.id for p in pairs}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[str, int] = {}
    for p in pairs:
        for sentence in (p.neg_content.strip(), p.pos_content.strip()):
            if sentence in first_seen:
                parent[find(p.id)] = find(first_seen[sentence])
            else:
                first_seen[sentence] = p.id
    groups: dict[int, list[int]] = {}
    for p in pairs:
        groups.setdefault(find(p.id), []).append(p.id)
    order = sorted(groups.values())
    random.Random(seed).shuffle(order)
    target = round(test_fraction * len(pairs))
    test: list[int] = []
    val: list[int] = []
    val_target = round(val_fraction * len(pairs))
    for group in order:
        if len(test) < target:
            test.extend(group)
        elif len(val) < val_target:
            val.extend(group)
        else:
            break
    train = sorted(set(parent) - set(test) - set(val))
    return {"train": train, "val": sorted(val), "test": sorted(test)}


def load_pairs(split: str = "test", path: Path = RAW, split_path: Path = SPLIT) -> list[SentimentPair]:
    """Return the pairs of one split ("train", "val", "test" or "all"), in id order."""
    check_choice("split", split, SPLITS)
    pairs = load_raw(path)
    if split == "all":
        return pairs
    if not Path(split_path).is_file():
        raise DiceError(f"no split file at {split_path}; run `dvc repro text-data` (or `python -m dicelib.text.sentiment_data`)")
    record = json.loads(Path(split_path).read_text(encoding="utf-8"))
    if split not in record:
        raise DiceError(f"{split_path} has no {split!r} split; rerun `dvc repro text-data`")
    ids = set(record[split])
    return [p for p in pairs if p.id in ids]


def main(argv: list[str] | None = None) -> None:
    """Write data/sentiment_editing/split.json from params.yaml (base.seed, text_data)."""
    import argparse

    import yaml

    from ..errors import Relation, StageParams, integer, number
    from ..io import Stage

    parser = argparse.ArgumentParser(prog="python -m dicelib.text.sentiment_data")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"), help="the params file (default: params.yaml)")
    params = yaml.safe_load(Path(parser.parse_args(argv).params).read_text())
    cfg = params["text_data"]
    StageParams("text_data", {"seed": integer(0), "test_fraction": number(0, 1, open_lo=True, open_hi=True),
                              "val_fraction": number(0, 1, open_hi=True)},
                (Relation(("test_fraction", "val_fraction"), "test_fraction + val_fraction < 1",
                          lambda t, v: t + v < 1),)).check(seed=params["base"]["seed"], **cfg)
    with Stage("text-data", [SPLIT]) as stage:
        split = make_split(load_raw(), float(cfg["test_fraction"]), int(params["base"]["seed"]),
                           float(cfg["val_fraction"]))
        record = {"seed": int(params["base"]["seed"]), "test_fraction": float(cfg["test_fraction"]),
                  "val_fraction": float(cfg["val_fraction"]), **split}
        atomic_write(stage.path(SPLIT), lambda f: f.write(json.dumps(record) + "\n"))
    print(f"wrote {SPLIT.relative_to(ROOT)}: {len(split['train'])} train / {len(split['val'])} val / "
          f"{len(split['test'])} test pairs")


if __name__ == "__main__":
    from ..io import run_stage

    kernels.pin_process(kernels.BFLOAT16)  # torch's kernels and threads (docs/reproducibility.md)
    run_stage(main)
