"""`shapes-oracle`: its prior against the generator, its marginals against brute force, the central invariant."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

import dicelib
from dicelib.errors import DiceError
from dicelib.image import shapesbench as sb
from dicelib.image.shapes_model import encode
from dicelib.image.shapes_oracle import KINDS, Grammar, ShapesOracle, tables

TINY = Grammar(size=7, colours=sb.COLOURS[:4], shapes=("square", "triangle"), sizes=(("small", 2), ("large", 3)), tries=3)


@pytest.fixture(scope="module")
def oracle() -> ShapesOracle:
    return ShapesOracle()


def _scenes(n: int, seed: int, num_objects: int | None = None) -> tuple[torch.Tensor, list[str]]:
    rng = np.random.default_rng(seed)
    scenes = [sb.random_scene(rng, num_objects) for _ in range(n)]
    return torch.from_numpy(np.stack([sb.render(s).ravel() for s in scenes]).astype(np.int64)), [sb.prompt(s) for s in scenes]


# --- brute force: every scene of a grammar, its generator prior (computed object by object), its render ---

def _boxes(g: Grammar):
    for z, (name, side) in enumerate(g.sizes):
        for r in range(g.size - side + 1):
            for c in range(g.size - side + 1):
                yield name, side, r, c


def _apart(a, b) -> bool:
    (_, sa, ra, ca), (_, sb_, rb, cb) = a, b
    return ca + sa < cb or cb + sb_ < ca or ra + sa < rb or rb + sb_ < ra


def brute_force(g: Grammar, text: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (renders [S, D], prior [S]) of every scene (of `text`, normalised; or all scenes), from the generator's rules."""
    renders, prior, texts = _enumerate(g)
    if text is None:
        return renders, prior
    keep_rows = texts == text
    return renders[keep_rows], prior[keep_rows] / prior[keep_rows].sum()


@functools.lru_cache(maxsize=2)
def _enumerate(g: Grammar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = list(_boxes(g))
    nz, nsh, nc = len(g.sizes), len(g.shapes), len(g.colours)
    npos = {name: (g.size - side + 1) ** 2 for name, side in g.sizes}

    def q(a) -> float:  # chance one draw of the second object lies apart from a
        return sum(_apart(a, b) / npos[b[0]] for b in boxes) / nz

    def keep(a) -> float:  # P(second object found within `tries` | first object a)
        return 1 - (1 - q(a)) ** g.tries

    def first(a) -> float:  # P(first object's size and position)
        return 1 / (nz * npos[a[0]])

    success = sum(first(a) * keep(a) for a in boxes)
    renders, prior, names = [], [], []
    for bg in range(nc):
        others = [c for c in range(nc) if c != bg]
        for a in boxes:
            for h in range(nsh):
                for c in others:
                    img = np.full((g.size, g.size), bg)
                    img[a[2]:a[2] + a[1], a[3]:a[3] + a[1]][sb._template(g.shapes[h], a[1])] = c
                    renders.append(img.ravel())
                    prior.append(0.5 / nc / (nc - 1) / nsh * first(a))
                    names.append((bg, ((a, h, c),)))
        for a, b in itertools.combinations(boxes, 2):
            if not _apart(a, b):
                continue
            # either object may have been drawn first: P(o1) P(o2 found | o1) summed over both orders
            pa = first(a) * first(b) * (keep(a) / q(a) + keep(b) / q(b))
            for ha, hb in itertools.product(range(nsh), repeat=2):
                for ca, cb in itertools.permutations(others, 2):
                    img = np.full((g.size, g.size), bg)
                    img[a[2]:a[2] + a[1], a[3]:a[3] + a[1]][sb._template(g.shapes[ha], a[1])] = ca
                    img[b[2]:b[2] + b[1], b[3]:b[3] + b[1]][sb._template(g.shapes[hb], b[1])] = cb
                    renders.append(img.ravel())
                    prior.append(0.5 / nc / (nc - 1) / (nc - 2) / nsh ** 2 * pa / success)
                    names.append((bg, ((a, ha, ca), (b, hb, cb))))

    def words(scene) -> str:
        bg, objs = scene
        objs = sorted(objs, key=lambda o: (o[0][3] + (o[0][1] - 1) / 2, o[0][2] + (o[0][1] - 1) / 2))
        return " and ".join(f"a {o[0][0]} {g.colours[o[2]]} {g.shapes[o[1]]}" for o in objs) + f" on a {g.colours[bg]} background"

    return np.array(renders), np.array(prior), np.array([words(s) for s in names])


def brute_marginals(o: ShapesOracle, renders: np.ndarray, prior: np.ndarray, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
    """Return the posterior average of one-hot renders [B, D, K]: likelihood per kind from first principles."""
    k = o.num_classes
    out = []
    for xi, ti in zip(x.numpy(), t.numpy().astype(np.float64)):
        lik = []
        for kind in o.kinds:
            v = xi[None, :]
            match = renders == v
            if kind == "mask":
                p = np.where(v == k, ti, np.where(match, 1 - ti, 0.0))
            elif kind == "uniform":
                p = np.where(v == k, 0.0, np.where(match, 1 - ti + ti / k, ti / k))
            else:
                r = o.config.replace_share
                p = np.where(v == k, (1 - r) * ti, np.where(match, 1 - ti + r * ti / k, r * ti / k))
            lik.append(np.exp(np.log((1 - o.floor) * p + o.floor / (k + 1)).sum(1)))
        w = prior * np.mean(lik, 0)
        w = w / w.sum()
        out.append(np.stack([(w[:, None] * (renders == c)).sum(0) for c in range(k)], -1))
    return np.stack(out)


def _noisy(x0: torch.Tensor, levels: list[float], kinds: list[str], k: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for x, t, kind in zip(x0, levels, kinds):
        hit = torch.rand(x.shape, generator=gen) < t
        if kind == "mask":
            rows.append(torch.where(hit, k, x))
        elif kind == "uniform":
            rows.append(torch.where(hit, torch.randint(k, x.shape, generator=gen), x))
        else:
            repl = hit & (torch.rand(x.shape, generator=gen) < 0.1)
            rows.append(torch.where(repl, torch.randint(k, x.shape, generator=gen), torch.where(hit, k, x)))
    return torch.stack(rows)


# --- prior ---

def test_prior_sums_to_one_and_matches_brute_force_on_a_tiny_grammar():
    o = ShapesOracle(TINY)
    renders, prior = brute_force(TINY)
    assert prior.sum() == pytest.approx(1.0, abs=1e-12)
    from dicelib.image.shapes_oracle import null_log_partition
    log_z = null_log_partition(torch.zeros(1, len(o.kinds), 49, 4, dtype=torch.float64), o.tables)
    assert abs(float(log_z)) < 1e-12
    assert tables(Grammar()).success == pytest.approx(0.98, abs=0.01)  # ShapesBench: 2 % of first objects force a redraw


def _first_object_counts(pairs: np.ndarray, tb) -> np.ndarray:
    return np.bincount(pairs, minlength=tb.num_sp)


def test_prior_matches_monte_carlo_draws_of_the_generator():
    """Chi-square over the left object's size and position in two-object scenes (bins merged to >= 20 expected)."""
    tb = tables(Grammar())
    ordered_pairs = tb.apart & tb.before
    exact = (tb.pair * ordered_pairs).sum(1)
    exact = exact / exact.sum()  # P(left object at size-position i)
    naive = ordered_pairs.sum(1) / ordered_pairs.sum()  # uniform over valid pairs: what ignoring the restart rule gives
    rng = np.random.default_rng(0)
    n = 6000
    index = {(z, r, c): i for i, (z, r, c) in enumerate(zip(tb.sp_size, tb.sp_row, tb.sp_col))}
    sizes = {name: z for z, (name, _) in enumerate(Grammar().sizes)}
    seen = np.array([index[sizes[o.size], o.row, o.col] for o in (sb.random_scene(rng, 2).objects[0] for _ in range(n))])
    counts = np.bincount(seen, minlength=tb.num_sp)
    order = np.argsort(exact)  # merge the rarest bins until each has >= 20 expected draws
    groups, cur, mass = np.zeros(tb.num_sp, dtype=int), 0, 0.0
    for i in order:
        groups[i] = cur
        mass += exact[i]
        if mass * n >= 20:
            cur, mass = cur + 1, 0.0
    g = groups.max() + 1
    obs = np.bincount(groups, counts, g)
    p_exact = stats.chisquare(obs, np.bincount(groups, exact, g) * n).pvalue
    p_naive = stats.chisquare(obs, np.bincount(groups, naive, g) * n).pvalue
    assert p_exact > 1e-3 and p_naive < 1e-6, (p_exact, p_naive)


# --- marginals ---

@pytest.mark.parametrize("text", ["a large red square and a small green triangle on a black background",
                                  "a small white triangle on a green background"])
def test_prompt_marginals_match_brute_force(text):
    o = ShapesOracle(TINY)
    renders, prior = brute_force(TINY, text)
    x0 = torch.from_numpy(renders[np.random.default_rng(1).choice(len(renders), 4)])
    levels, kinds = [0.0, 0.3, 0.6, 0.9], ["mask", "uniform", "mask_replace", "mask"]
    x = _noisy(x0, levels, kinds, o.num_classes)
    x[0, 0] = (x[0, 0] + 1) % o.num_classes  # a pixel no scene explains: the floor keeps the posterior defined
    t = torch.tensor(levels)
    got = o.marginals(x, t, [text] * 4).numpy()
    want = brute_marginals(o, renders, prior, x, t)
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert not np.allclose(want[1], want[3])  # the evidence matters


@pytest.mark.parametrize("kinds", [KINDS, ("mask",), ("mask_replace",)])
def test_null_prompt_marginals_match_brute_force(kinds):
    o = ShapesOracle(TINY, kinds=kinds)
    renders, prior = brute_force(TINY)
    x0 = torch.from_numpy(renders[np.random.default_rng(2).choice(len(renders), 4, p=prior)])
    levels = [0.0, 0.25, 0.6, 0.95]
    x = _noisy(x0, levels, [kinds[i % len(kinds)] for i in range(4)], o.num_classes, seed=3)
    t = torch.tensor(levels)
    got = o.marginals(x, t, None).numpy()
    np.testing.assert_allclose(got, brute_marginals(o, renders, prior, x, t), atol=1e-9)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-12)


def test_prompt_marginals_on_shapesbench_match_a_scene_by_scene_sum(oracle):
    """The full grammar's table: every consistent scene enumerated with sb.Obj / sb.valid and weighted object by object."""
    text = "a small red circle and a large blue diamond on a white background"
    tb = oracle.tables
    npos = {n: (sb.SIZE - s + 1) ** 2 for n, s in sb.SIZES.items()}
    index = {(z, r, c): i for i, (z, r, c) in enumerate(zip(tb.sp_size, tb.sp_row, tb.sp_col))}

    def g(o):  # the restart factor of a first object (q: share of second-object draws apart from it)
        q = tb.apart[index[list(sb.SIZES).index(o.size), o.row, o.col]] / np.tile([npos[n] for n in sb.SIZES], 1)[tb.sp_size]
        q = q.sum() / len(sb.SIZES)
        return (1 - (1 - q) ** 200) / q

    renders, prior = [], []
    for ra, ca in itertools.product(range(12), repeat=2):
        a = sb.Obj("circle", "red", "small", ra, ca)
        for rb, cb in itertools.product(range(10), repeat=2):
            b = sb.Obj("diamond", "blue", "large", rb, cb)
            s = sb.Scene("white", sb.ordered([a, b]))
            if sb.valid(s) and sb.prompt(s) == text:
                renders.append(sb.render(s).ravel())
                prior.append(g(a) + g(b))
    renders, prior = np.array(renders), np.array(prior) / np.sum(prior)
    assert len(renders) == len(oracle.table(text).log_prior)
    x0 = torch.from_numpy(renders[[0, 100]]).long()
    x = _noisy(x0, [0.5, 0.8], ["mask", "mask_replace"], 8, seed=4)
    t = torch.tensor([0.5, 0.8])
    np.testing.assert_allclose(oracle.marginals(x, t, [text] * 2).numpy(), brute_marginals(oracle, renders, prior, x, t),
                               atol=1e-9)


def test_a_fully_visible_image_returns_itself(oracle):
    x0, prompts = _scenes(4, seed=5)
    t = torch.zeros(4)
    for cond in (prompts, encode(prompts), None):
        p = oracle.logits(x0, t, cond).exp()
        assert torch.equal(p.argmax(-1), x0)
        assert float(p.gather(-1, x0.unsqueeze(-1)).min()) > 1 - 1e-6


def test_follows_the_protocol_and_rejects_bad_input(oracle):
    assert isinstance(oracle, dicelib.DiscreteDenoiser)
    assert oracle.num_classes == 8 and oracle.mask_id == 8 and oracle.null_cond.shape == (1, 14)
    x0, prompts = _scenes(2, seed=6)
    x = x0.clone()
    x[:, ::2] = 8
    out = oracle.logits(x, torch.tensor([0.5, 0.5]), prompts)
    assert out.shape == (2, 256, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 256), atol=1e-5, rtol=0)
    with pytest.raises(DiceError, match="describes no ShapesBench scene"):
        oracle.logits(x, torch.zeros(2), ["a small red circle on a red background"] * 2)
    with pytest.raises(DiceError, match=r"\[B, 256\]"):
        oracle.logits(x[:, :10], torch.zeros(2), prompts)
    with pytest.raises(DiceError, match="unknown corruption kind"):
        ShapesOracle(kinds=("blur",))


# --- DICE on the oracle ---

@pytest.mark.parametrize("method,opts", [("masked", {"noise": "mask", "steps": 8}), ("masked", {"noise": "uniform", "steps": 6}),
                                         ("multinomial", {"steps": 8})])
@pytest.mark.parametrize("pinv", ["onehot", "lai", "model"])
def test_central_invariant_through_invert_and_edit(oracle, method, opts, pinv):
    x0, prompts = _scenes(2, seed=7)
    cond = encode(prompts)
    cfg = 2.0 if pinv == "lai" and method == "masked" and opts["noise"] == "mask" else None  # one guided run (null path)
    inv = dicelib.invert(oracle, x0, cond, method=method, pseudo_inverse=pinv, cfg_scale=cfg, tau=0.8,
                         generator=torch.Generator().manual_seed(0), **opts)
    assert torch.equal(dicelib.edit(oracle, inv, cond, lambda1=1.0, lambda2=0.0), x0)


def test_an_edit_on_the_oracle_parses_to_the_target():
    """Change a colour with DICE (masked method): the edited image shows the target prompt exactly."""
    oracle = ShapesOracle()
    rng = np.random.default_rng(8)
    source, target = sb.random_case(rng, "change_colour")
    x0 = torch.from_numpy(sb.render(source).ravel()[None].astype(np.int64))
    inv = dicelib.invert(oracle, x0, encode([sb.prompt(source)]), method="masked", noise="mask", steps=16, tau=0.8,
                         pseudo_inverse="lai", generator=torch.Generator().manual_seed(0))
    out = dicelib.edit(oracle, inv, encode([sb.prompt(target)]), lambda1=0.7, generator=torch.Generator().manual_seed(1))
    assert sb.matches_prompt(out.numpy().reshape(16, 16), sb.prompt(target), sizes=True)


def test_registered_by_name():
    from dicelib.registry import load_model

    model, spec = load_model("shapes-oracle")
    assert spec.family == "shapes" and model.method == "masked" and model.num_classes == 8
    x0, prompts = _scenes(1, seed=9)
    img = model.decode(x0)
    assert torch.equal(model.encode_image(img), x0)
    assert torch.equal(model.logits(x0, torch.zeros(1), model.encode_prompt(prompts)).argmax(-1), x0)
    assert math.isclose(float(model.logits(x0, torch.zeros(1), None).exp().sum(-1).mean()), 1.0, abs_tol=1e-5)


@pytest.mark.parametrize("method", ["masked", "multinomial"])
def test_cli_inverts_and_edits_with_the_oracle(tmp_path, method):
    from PIL import Image
    from typer.testing import CliRunner

    from dicelib.cli import app

    source, target = sb.random_case(np.random.default_rng(10), "change_shape")
    Image.fromarray(sb.to_rgb(sb.render(source))).save(tmp_path / "in.png")
    inv, out = tmp_path / "inv.pt", tmp_path / "out.png"
    steps = ["--steps", "12"] if method == "masked" else []
    args = ["--model", "shapes-oracle", "--method", method, *steps]
    res = CliRunner().invoke(app, ["invert", *args, "--image", str(tmp_path / "in.png"), "--source", sb.prompt(source),
                                   "--save-inversion", str(inv), "--out", str(tmp_path / "recon.png")])
    assert res.exit_code == 0, res.output
    assert "reconstruction: 0 of 256" in res.output
    # the saved inversion carries its method and steps: edit takes only the model and the edit's own options
    res = CliRunner().invoke(app, ["edit", "--model", "shapes-oracle", "--inversion", str(inv), "--target", sb.prompt(target),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    tokens = np.asarray(Image.open(out).convert("RGB"))[..., None, :].astype(int) - sb.PALETTE.astype(int)
    assert sb.matches_prompt((tokens ** 2).sum(-1).argmin(-1), sb.prompt(target))
