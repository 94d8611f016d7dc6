"""ShapesBench as a next-scale benchmark: the pyramid rule, and the next-scale oracle against brute force."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch

from dicelib.errors import DiceError
from dicelib.image import shapesbench as sb
from dicelib.image.shapes_oracle import Grammar
from dicelib.image.shapes_oracle_next_scale import ShapesNextScaleOracle
from dicelib.image.shapes_pyramid import finest, pyramid, scale_sides, scales

SMALL = Grammar(size=8, colours=sb.COLOURS[:3], shapes=("square", "triangle"), sizes=(("small", 2), ("large", 3)),
                tries=3)
TOL = 1e-9  # float64 sums over a few hundred thousand scenes in two different orders


# --- the pyramid ---

def test_pyramid_takes_block_modes_with_ties_to_the_lower_colour():
    img = np.zeros((4, 4), dtype=np.int64)
    img[:2, :2] = [[3, 3], [2, 2]]  # a 2-2 tie: colour 2 wins
    img[:2, 2:] = [[5, 5], [5, 1]]  # colour 5 wins 3-1
    img[2:, 2:] = 7  # the whole image: 0 and 7 have four pixels each, 5 three
    maps = pyramid(img[None], size=4)
    assert [m.shape for m in maps] == [(1, 1), (1, 4), (1, 9), (1, 16)]  # sides 1, 2, then 4 - 1 = 3, then 4
    assert maps[1].tolist() == [[2, 5, 0, 7]]
    # side 3: overlapping 2 x 2 windows starting at rows/cols 0, 1, 2; (1, 1) sees 2, 5, 0, 7 once each: colour 0
    assert maps[2].tolist() == [[2, 5, 5, 0, 0, 7, 0, 0, 7]]
    assert maps[0].tolist() == [[0]]  # 0 and 7 tie with four pixels each: the lower id
    assert torch.equal(finest(maps), torch.from_numpy(img.reshape(1, 16)))


def test_pyramid_of_shapesbench_renders_has_the_background_on_top_and_the_image_at_the_bottom():
    rng = np.random.default_rng(1)
    scenes = [sb.random_scene(rng) for _ in range(20)]
    x = np.stack([sb.render(s).ravel() for s in scenes])
    maps = pyramid(x)
    assert scales() == [(s, s) for s in (1, 2, 4, 8, 12, 14, 15, 16)]
    assert [m.shape[1] for m in maps] == [1, 4, 16, 64, 144, 196, 225, 256]
    assert maps[0][:, 0].tolist() == [sb.COLOURS.index(s.background) for s in scenes]
    assert torch.equal(maps[-1], torch.from_numpy(x.astype(np.int64)))
    assert torch.equal(pyramid(x)[2], maps[2])  # deterministic


def test_pyramid_rejects_bad_input():
    with pytest.raises(DiceError, match="power of two"):
        scale_sides(12)
    with pytest.raises(DiceError, match="colour ids"):
        pyramid(np.full((1, 256), 8))
    with pytest.raises(DiceError, match=r"\[B, 256\]"):
        pyramid(np.zeros((1, 100), dtype=np.int64))


# --- brute force: every scene of a small grammar from the generator's rules, its pyramid, its prompt ---

@functools.lru_cache(maxsize=1)
def _all_scenes(g: Grammar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (pyramids [S, P], prior [S], prompt [S]) of every scene, the prior object by object from the generator."""
    n, nc, nsh, nz = g.size, len(g.colours), len(g.shapes), len(g.sizes)
    boxes = [(name, side, r, c) for name, side in g.sizes for r in range(n - side + 1) for c in range(n - side + 1)]
    npos = {name: (n - side + 1) ** 2 for name, side in g.sizes}
    first = np.array([1 / (nz * npos[b[0]]) for b in boxes])
    apart = np.array([[a[3] + a[1] < b[3] or b[3] + b[1] < a[3] or a[2] + a[1] < b[2] or b[2] + b[1] < a[2]
                       for b in boxes] for a in boxes])
    q = apart @ first  # chance one draw of the second object lies apart from the first
    keep = 1 - (1 - q) ** g.tries
    success = float((first * keep).sum())
    masks = {}
    for i, (name, side, r, c) in enumerate(boxes):
        for h, shape in enumerate(g.shapes):
            m = np.zeros((n, n), dtype=bool)
            m[r:r + side, c:c + side] = sb._template(shape, side)
            masks[i, h] = m.ravel()
    centre = {i: (b[3] + (b[1] - 1) / 2, b[2] + (b[1] - 1) / 2) for i, b in enumerate(boxes)}

    def words(objs, bg):  # objs: (box index, shape, colour), listed left to right
        objs = sorted(objs, key=lambda o: centre[o[0]])
        return " and ".join(f"a {boxes[i][0]} {g.colours[c]} {g.shapes[h]}" for i, h, c in objs) + \
            f" on a {g.colours[bg]} background"

    renders, prior, texts = [], [], []
    for bg in range(nc):
        others = [c for c in range(nc) if c != bg]
        for i, h, c in itertools.product(range(len(boxes)), range(nsh), others):
            renders.append(np.where(masks[i, h], c, bg))
            prior.append(0.5 / nc / (nc - 1) / nsh * first[i])
            texts.append(words([(i, h, c)], bg))
        for i, j in itertools.combinations(range(len(boxes)), 2):
            if not apart[i, j]:
                continue
            pair = first[i] * first[j] * (keep[i] / q[i] + keep[j] / q[j])  # either may have been drawn first
            for hi, hj in itertools.product(range(nsh), repeat=2):
                for ci, cj in itertools.permutations(others, 2):
                    renders.append(np.where(masks[i, hi], ci, np.where(masks[j, hj], cj, bg)))
                    prior.append(0.5 / nc / (nc - 1) / (nc - 2) / nsh ** 2 * pair / success)
                    texts.append(words([(i, hi, ci), (j, hj, cj)], bg))
    maps = torch.cat(pyramid(np.stack(renders), size=n, num_classes=nc), 1).numpy()
    return maps, np.array(prior), np.array(texts)


def _brute(o: ShapesNextScaleOracle, flat: np.ndarray, k: int, text: str) -> np.ndarray:
    """Return the oracle's marginals [n_k, K] from first principles: posterior over scenes x one-hot maps."""
    maps, prior, texts = _all_scenes(o.grammar)
    if text:
        maps, prior = maps[texts == text], prior[texts == text]
    kc, f = o.num_classes, o.floor
    lo, hi = o.offsets[k], o.offsets[k + 1]
    lik = np.where(maps[:, :lo] == flat[None], 1 - f + f / kc, f / kc).prod(1)
    w = prior * lik
    w = w / w.sum()
    clean = np.stack([(w[:, None] * (maps[:, lo:hi] == c)).sum(0) for c in range(kc)], -1)
    return (1 - f) * clean + f / kc


@pytest.fixture(scope="module")
def small() -> ShapesNextScaleOracle:
    return ShapesNextScaleOracle(SMALL)


def _cases(o: ShapesNextScaleOracle, seed: int) -> list[tuple[str, list[torch.Tensor]]]:
    """Return (prompt, pyramid) of a few scenes of the small grammar, one and two objects, plus corrupted pyramids."""
    maps, _, texts = _all_scenes(o.grammar)
    rng = np.random.default_rng(seed)
    out = []
    for idx in rng.choice(len(texts), 4, replace=False):
        row = torch.from_numpy(maps[idx].astype(np.int64))[None]
        clean = [row[:, a:b] for a, b in zip(o.offsets[:-1], o.offsets[1:])]
        noisy = [torch.where(torch.from_numpy(rng.random(m.shape) < 0.3), torch.from_numpy(
            rng.integers(0, o.num_classes, m.shape)), m) for m in clean]  # an edited prefix no scene explains
        out += [(str(texts[idx]), clean), (str(texts[idx]), noisy)]
    return out


def test_small_grammar_has_one_and_two_object_scenes(small):
    _, prior, texts = _all_scenes(SMALL)
    assert prior.sum() == pytest.approx(1.0, abs=1e-12)
    assert {t.count(" and ") for t in texts} == {0, 1}


@pytest.mark.parametrize("seed", [0, 1])
def test_prompted_scale_logits_match_brute_force_at_every_scale(small, seed):
    for text, maps in _cases(small, seed):
        for k in range(len(small.scales)):
            got = small.marginals(maps[:k], [text])[0].numpy()
            want = _brute(small, torch.cat(maps[:k], 1)[0].numpy() if k else np.zeros(0, int), k, text)
            np.testing.assert_allclose(got, want, atol=TOL, err_msg=f"{text!r} scale {k}")
            assert np.allclose(got.sum(-1), 1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_null_prompt_scale_logits_match_brute_force_over_every_scene(small, seed):
    for _, maps in _cases(small, seed)[:4]:
        for k in range(len(small.scales)):
            got = small.marginals(maps[:k], small.null_cond)[0].numpy()
            want = _brute(small, torch.cat(maps[:k], 1)[0].numpy() if k else np.zeros(0, int), k, "")
            np.testing.assert_allclose(got, want, atol=TOL, err_msg=f"null prompt, scale {k}")


def test_scale_logits_are_finite_log_probabilities_and_batch_rows_are_independent(small):
    (t1, m1), (t2, m2) = _cases(small, 3)[0], _cases(small, 3)[3]
    both = [torch.cat([a, b]) for a, b in zip(m1, m2)]
    for k in range(len(small.scales)):
        lp = small.scale_logits(both[:k], [t1, ""])
        assert lp.shape == (2, small.sizes[k], small.num_classes) and lp.dtype == torch.float32
        assert torch.isfinite(lp).all()
        torch.testing.assert_close(lp[1:], small.scale_logits(m2[:k], [""]))


def test_full_grammar_posterior_given_the_true_prefix_predicts_the_next_map():
    o = ShapesNextScaleOracle()
    rng = np.random.default_rng(5)
    scenes = [sb.random_scene(rng) for _ in range(3)]
    maps = o.pyramid(np.stack([sb.render(s).ravel() for s in scenes]))
    prompts = [sb.prompt(s) for s in scenes]
    lp = o.scale_logits(maps[:4], prompts)
    assert (lp.argmax(-1) == maps[4]).double().mean() >= 0.97  # the 8x8 map leaves a few edge pixels ambiguous
    lp = o.scale_logits(maps[:-1], prompts)  # the 12, 14 and 15 maps pin every edge: the image is all but certain
    assert torch.equal(lp.argmax(-1), maps[-1]) and bool((lp.amax(-1) > math.log(0.999)).all())
    assert torch.equal(o.scale_logits(maps[:1], [sb.prompt(s) for s in scenes]).argmax(-1), maps[1])


def test_bad_prefix_raises_a_dice_error(small):
    maps = _cases(small, 0)[0][1]
    with pytest.raises(DiceError, match="prefix map 1 must have shape"):
        small.scale_logits([maps[0], maps[2]], small.null_cond)
    with pytest.raises(DiceError, match="colour ids"):
        small.scale_logits([maps[0] + 9], small.null_cond)
    with pytest.raises(DiceError, match="prefix must be a list"):
        small.scale_logits(maps, small.null_cond)


# --- the registry serves it ---

def test_registry_serves_shapes_oracle_for_next_scale_with_exact_image_io():
    from dicelib.registry import get_spec, load_model

    assert "next_scale" in get_spec("shapes-oracle").served()
    assert get_spec("random-amused").served() == ("masked",)
    model, spec = load_model("shapes-oracle", method="next_scale")
    assert model.method == "next_scale" and spec.settings.method == "next_scale"
    assert load_model("shapes-oracle")[0].method == "masked"  # the default stays the masked method
    img = sb.render(sb.random_scene(np.random.default_rng(2)))
    rgb = torch.from_numpy(sb.to_rgb(img)).permute(2, 0, 1).float()[None] / 255
    maps = model.encode_image(rgb)
    assert [m.shape for m in maps] == [(1, s * s) for s in scale_sides()]
    assert torch.equal(maps[-1][0], torch.from_numpy(img.ravel().astype(np.int64)))
    assert torch.equal(model.decode(maps), rgb)
    with pytest.raises(DiceError, match="serves masked, not 'next_scale'"):
        load_model("random-amused", method="next_scale")


def test_choice_rule_prefers_exact_parse_among_settings_that_preserve_enough():
    import pandas as pd

    from dicelib.image.next_scale_editing import choose

    summary = pd.DataFrame({"type": ["overall"] * 3 + ["add_object"], "lambda1": [0.5, 0.7, 0.9, 0.1],
                            "preservation": [0.8, 0.95, 0.99, 1.0], "exact_parse": [0.9, 0.6, 0.6, 1.0],
                            "edit_score": [0.7, 0.6, 0.7, 1.0]})
    assert choose(summary, ["lambda1"], 0.9) == {"lambda1": 0.9}  # 0.5 preserves too little; tie broken by edit score
    assert choose(summary, ["lambda1"], 0.999) == {"lambda1": 0.5}  # none qualifies: the best edit score
