"""ShapesBench: palette images of one or two shapes, their prompts, an exact parser, and edit cases.

A scene is a background colour and one or two objects (shape, colour, size, top-left corner) on a
16x16 grid of K = 8 palette colours; its pixels are the tokens (class ids 0..7) a model sees.
Prompts read "a small red circle and a large blue square on a green background"; objects are
listed left to right (by centre column, then row), so the word order also says roughly where each
object is. Two objects always differ in colour and never touch (their boxes are at least one pixel
apart), so `parse` reads any rendered scene back exactly from its pixels: background = the most
frequent colour; objects = 8-connected components of one colour matched pixel for pixel against
the shape templates.

Edit cases mirror PIE-Bench's categories: change shape, change colour, change background, change
size (keeping the centre), add object, remove object. Each case holds a source scene, an oracle
target scene (the same scene with one thing changed, everything else in place), both prompts and
the exact edit mask (pixels where the two renders differ). Generation is deterministic by seed.
The case table (`build_cases`) and its storage live in `shapesbench_data`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..errors import DiceError

SIZE = 16  # image side in pixels: D = 256 tokens
COLOURS = ("black", "white", "red", "green", "blue", "yellow", "purple", "orange")
PALETTE = np.array([[0, 0, 0], [255, 255, 255], [220, 30, 30], [40, 170, 60], [40, 80, 220], [245, 210, 40],
                    [150, 60, 190], [245, 140, 20]], dtype=np.uint8)  # [K, 3] RGB
NUM_CLASSES = len(COLOURS)
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 5, "large": 7}  # box side in pixels
EDIT_TYPES = ("change_shape", "change_colour", "change_background", "change_size", "add_object", "remove_object")


def _template(shape: str, side: int) -> np.ndarray:
    """Return the boolean [side, side] pixel mask of a shape."""
    c = (side - 1) / 2
    y, x = np.mgrid[:side, :side]
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "circle":
        return (x - c) ** 2 + (y - c) ** 2 <= (side / 2) ** 2 - 0.5
    if shape == "diamond":
        return np.abs(x - c) + np.abs(y - c) <= c
    if shape == "triangle":  # right angle at the bottom left: reads as a triangle even at 5 pixels
        return x <= y
    raise DiceError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


TEMPLATES = {(s, z): _template(s, side) for s in SHAPES for z, side in SIZES.items()}


@dataclass(frozen=True)
class Obj:
    """One object: shape, colour and size names, top-left corner (row, col) of its box."""

    shape: str
    colour: str
    size: str
    row: int
    col: int

    @property
    def side(self) -> int:
        return SIZES[self.size]

    def box(self) -> tuple[int, int, int, int]:
        """Return (top, left, bottom, right), inclusive."""
        return self.row, self.col, self.row + self.side - 1, self.col + self.side - 1

    def centre(self) -> tuple[float, float]:
        return self.row + (self.side - 1) / 2, self.col + (self.side - 1) / 2


@dataclass(frozen=True)
class Scene:
    """A background colour and its objects (listed left to right, as the prompt reads)."""

    background: str
    objects: tuple[Obj, ...]


def ordered(objects: tuple[Obj, ...] | list[Obj]) -> tuple[Obj, ...]:
    """Return objects in prompt order: by centre column, then centre row."""
    return tuple(sorted(objects, key=lambda o: (o.centre()[1], o.centre()[0])))


def inside(o: Obj) -> bool:
    """Return whether the object's box lies inside the image."""
    top, left, bottom, right = o.box()
    return top >= 0 and left >= 0 and bottom < SIZE and right < SIZE


def apart(a: Obj, b: Obj) -> bool:
    """Return whether two boxes leave at least one empty row or column between them."""
    at, al, ab, ar = a.box()
    bt, bl, bb, br = b.box()
    return ar + 1 < bl or br + 1 < al or ab + 1 < bt or bb + 1 < at


def valid(scene: Scene) -> bool:
    """Return whether a scene follows ShapesBench's rules (inside, apart, distinct colours)."""
    objs = scene.objects
    colours = [o.colour for o in objs]
    return (1 <= len(objs) <= 2 and all(inside(o) for o in objs) and scene.background not in colours
            and len(set(colours)) == len(colours) and (len(objs) < 2 or apart(objs[0], objs[1])))


def render(scene: Scene) -> np.ndarray:
    """Return the scene's tokens: [SIZE, SIZE] uint8 colour ids."""
    img = np.full((SIZE, SIZE), COLOURS.index(scene.background), dtype=np.uint8)
    for o in scene.objects:
        top, left, bottom, right = o.box()
        view = img[top:bottom + 1, left:right + 1]
        view[TEMPLATES[o.shape, o.size]] = COLOURS.index(o.colour)
    return img


def to_rgb(tokens: np.ndarray) -> np.ndarray:
    """Return palette colours of tokens [..., H, W] as uint8 RGB [..., H, W, 3]."""
    tokens = np.asarray(tokens)
    if tokens.min() < 0 or tokens.max() >= NUM_CLASSES:
        raise DiceError(f"tokens must be colour ids 0..{NUM_CLASSES - 1}, got range [{tokens.min()}, {tokens.max()}]")
    return PALETTE[tokens]


def prompt(scene: Scene) -> str:
    """Return the scene's prompt, objects left to right."""
    names = [f"a {o.size} {o.colour} {o.shape}" for o in ordered(scene.objects)]
    return f"{' and '.join(names)} on a {scene.background} background"


def parse_prompt(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Return (background, [(size, colour, shape), ...]) of a ShapesBench prompt."""
    words = text.split()
    if len(words) < 8 or words[-4:-2] != ["on", "a"] or words[-1] != "background":
        raise DiceError(f"not a ShapesBench prompt: {text!r} (expected 'a small red circle [and ...] on a green background')")
    objs = []
    for chunk in " ".join(words[:-4]).split(" and "):
        parts = chunk.split()
        if len(parts) != 4 or parts[0] != "a" or parts[1] not in SIZES or parts[2] not in COLOURS or parts[3] not in SHAPES:
            raise DiceError(f"cannot read object {chunk!r} in {text!r}; expected 'a <size> <colour> <shape>' "
                            f"with size in {tuple(SIZES)}, colour in {COLOURS}, shape in {SHAPES}")
        objs.append((parts[1], parts[2], parts[3]))
    if words[-2] not in COLOURS:
        raise DiceError(f"unknown background colour {words[-2]!r}; expected one of {COLOURS}")
    return words[-2], objs


def parse(tokens: np.ndarray) -> dict:
    """Return what a token image shows: background, recognised objects, and unrecognised components.

    {"background": str, "objects": [Obj, ...] (prompt order), "unknown": int (components matching
    no template)}. Exact: every pixel of a component must match a template.
    """
    tokens = np.asarray(tokens).reshape(SIZE, SIZE)
    counts = np.bincount(tokens.ravel(), minlength=NUM_CLASSES)
    bg = int(counts.argmax())
    objects, unknown = [], 0
    for c in range(NUM_CLASSES):
        if c == bg or counts[c] == 0:
            continue
        labels, n = ndimage.label(tokens == c, structure=np.ones((3, 3), dtype=int))
        for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
            crop = labels[sl] == lab
            match = [(s, z) for (s, z), t in TEMPLATES.items() if t.shape == crop.shape and np.array_equal(t, crop)]
            if match:
                objects.append(Obj(match[0][0], COLOURS[c], match[0][1], sl[0].start, sl[1].start))
            else:
                unknown += 1
    return {"background": COLOURS[bg], "objects": list(ordered(objects)), "unknown": unknown}


def matches_prompt(tokens: np.ndarray, text: str, sizes: bool = False) -> bool:
    """Return whether an image shows exactly its prompt: background, object colours and shapes (and sizes)."""
    bg, want = parse_prompt(text)
    seen = parse(tokens)
    if seen["unknown"] or seen["background"] != bg:
        return False
    key = (lambda s, c, h: (s, c, h)) if sizes else (lambda s, c, h: (c, h))
    got = Counter(key(o.size, o.colour, o.shape) for o in seen["objects"])
    return got == Counter(key(*w) for w in want)


@lru_cache(maxsize=1)
def _placements() -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Return every template placement as boolean rows [P, SIZE * SIZE] and its (shape, size) per row."""
    rows, names = [], []
    for (shape, size), tmpl in TEMPLATES.items():
        side = SIZES[size]
        for r in range(SIZE - side + 1):
            for c in range(SIZE - side + 1):
                img = np.zeros((SIZE, SIZE), dtype=bool)
                img[r:r + side, c:c + side] = tmpl
                rows.append(img.ravel())
                names.append((shape, size))
    return np.stack(rows), names


def matches_prompt_tolerant(tokens: np.ndarray, text: str, sizes: bool = False, min_iou: float = 0.8,
                            max_stray: int = 3) -> bool:
    """Return whether an image shows its prompt up to a few wrong pixels (a looser `matches_prompt`).

    The background (most frequent colour) is the prompt's; for each prompted object, the pixels of
    its colour overlap the best-fitting placement of any template with IoU >= `min_iou`, and that
    template has the prompted shape (and size, with `sizes`); at most `max_stray` pixels have a colour
    that is neither the background nor a prompted object's. Accepts every render and every
    1-pixel perturbation of one; rejects wrong shapes, wrong colours, added and removed objects.
    """
    bg, want = parse_prompt(text)
    tokens = np.asarray(tokens).reshape(-1)
    counts = np.bincount(tokens, minlength=NUM_CLASSES)
    if COLOURS[int(counts.argmax())] != bg:
        return False
    prompted = {COLOURS.index(bg)} | {COLOURS.index(c) for _, c, _ in want}
    if sum(int(counts[c]) for c in range(NUM_CLASSES) if c not in prompted) > max_stray:
        return False
    rows, names = _placements()
    for size, colour, shape in want:
        pix = tokens == COLOURS.index(colour)
        if not pix.any():
            return False
        inter = rows[:, pix].sum(1)
        iou = inter / (rows.sum(1) + pix.sum() - inter)
        best = iou.max()
        fits = {names[i] for i in np.flatnonzero(iou == best)}
        if best < min_iou or not any(h == shape and (not sizes or z == size) for h, z in fits):
            return False
    return True


def random_object(rng: np.random.Generator, taken: list[Obj], background: str, tries: int = 200) -> Obj | None:
    """Return a random object that fits beside `taken` (distinct colour, apart), or None."""
    colours = [c for c in COLOURS if c != background and c not in {o.colour for o in taken}]
    for _ in range(tries):
        size = str(rng.choice(list(SIZES)))
        side = SIZES[size]
        o = Obj(str(rng.choice(SHAPES)), str(rng.choice(colours)), size,
                int(rng.integers(0, SIZE - side + 1)), int(rng.integers(0, SIZE - side + 1)))
        if all(apart(o, t) for t in taken):
            return o
    return None


def random_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    """Return a random valid scene with 1 or 2 objects (random count when None)."""
    n = int(rng.integers(1, 3)) if num_objects is None else num_objects
    if n not in (1, 2):
        raise DiceError(f"num_objects must be 1 or 2, got {num_objects!r}")
    while True:
        bg = str(rng.choice(COLOURS))
        objs: list[Obj] = []
        for _ in range(n):
            o = random_object(rng, objs, bg)
            if o is None:
                break
            objs.append(o)
        if len(objs) == n:
            return Scene(bg, ordered(objs))


def edit_scene(rng: np.random.Generator, source: Scene, edit_type: str) -> Scene | None:
    """Return the source scene with one `edit_type` change (everything else in place), or None if impossible."""
    objs = list(source.objects)
    used = {o.colour for o in objs}
    if edit_type == "change_background":
        return Scene(str(rng.choice([c for c in COLOURS if c not in used | {source.background}])), source.objects)
    if edit_type == "add_object":
        new = random_object(rng, objs, source.background)
        return None if new is None or len(objs) != 1 else Scene(source.background, ordered(objs + [new]))
    if edit_type == "remove_object":
        return None if len(objs) != 2 else Scene(source.background, (objs[int(rng.integers(2))],))
    i = int(rng.integers(len(objs)))
    o = objs[i]
    if edit_type == "change_shape":
        objs[i] = replace(o, shape=str(rng.choice([s for s in SHAPES if s != o.shape])))
    elif edit_type == "change_colour":
        objs[i] = replace(o, colour=str(rng.choice([c for c in COLOURS if c not in used | {source.background}])))
    elif edit_type == "change_size":
        shift = (SIZES["large"] - SIZES["small"]) // 2  # keep the centre
        d = shift if o.size == "large" else -shift
        objs[i] = replace(o, size="small" if o.size == "large" else "large", row=o.row + d, col=o.col + d)
    else:
        raise DiceError(f"unknown edit type {edit_type!r}; expected one of {', '.join(EDIT_TYPES)}")
    target = Scene(source.background, ordered(objs))
    return target if valid(target) else None


def random_case(rng: np.random.Generator, edit_type: str) -> tuple[Scene, Scene]:
    """Return a (source, target) pair of scenes for one edit type."""
    n = {"add_object": 1, "remove_object": 2}.get(edit_type)
    while True:
        source = random_scene(rng, n)
        target = edit_scene(rng, source, edit_type)
        if target is not None:
            return source, target
