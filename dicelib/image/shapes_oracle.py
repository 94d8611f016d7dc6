"""Return `shapes-oracle`: the exact Bayes denoiser of ShapesBench, p(x0 | x_t, t, prompt), by enumeration.

ShapesBench scenes come from a finite grammar (background; one or two objects, each a shape,
size, colour and position), so the posterior over x0 can be computed exactly: every scene
consistent with the prompt is weighted by the generator's prior times the likelihood of x_t
under the corruption, and the per-pixel marginals are the posterior average of the renders.

Prior (`shapesbench.random_scene`): one or two objects with probability 1/2 each; a uniform
background; the first object uniform (shape, size, colour other than the background, position);
the second drawn uniformly (colour other than both) until one lies apart from the first, up to
`tries` times, after which the whole scene is redrawn. Given a first object A that leaves a
share q(A) of the second object's draws apart from it, the second object B is chosen with
probability p(B) (1 - (1 - q(A))^tries) / q(A), and a scene {A, B} (prompt order is left to
right, so either may have been drawn first) has prior proportional to g(A) + g(B) with
g(A) = (1 - (1 - q(A))^tries) / q(A), times 1 / (positions of A's size x positions of B's size).

Likelihood: per pixel, x_t given x0's colour c, under a corruption kind at level t:
- "mask": [MASK] absorption (the masked method with noise="mask"): MASK with t, c with 1 - t;
- "uniform": uniform renoise (the masked method with noise="uniform"): c with 1 - t + t/K, any other
  colour with t/K;
- "mask_replace": the multinomial method's mask-and-replace kernel under this model's own
  `transition_schedule` (`shapes_model.shapes_schedule`): c with abar + bbar/K, another colour
  with bbar/K, MASK with gbar, for abar = 1 - t, gbar = (1 - r) t, bbar = r t.
Each likelihood is mixed with a uniform floor `floor` over the K + 1 states, so an x_t that no
scene of the prompt can produce (an edit's intermediate state) still gets a posterior. The
denoiser does not know which method calls it: by default the corruption kind is a latent
variable too, uniform over `kinds`, and the posterior is exact for that mixture (a row with
[MASK] and replaced pixels is read as mask-and-replace, one with [MASK] only as absorption, one
without [MASK] as renoise). `kinds=("mask",)` (etc.) gives the exact posterior of one kernel.

Null prompt (guidance): the sum over all scenes factorises over background x objects, so it is
computed in closed form (pair sums as small matrix products) and its per-pixel marginals are the
derivatives of log Z with respect to the per-pixel log-likelihoods (autograd), never enumerated.

The grammar's sizes are a parameter (`Grammar`), so tests can brute-force a tiny one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from . import shapesbench as sb
from ..errors import DiceError
from .shapes_model import VOCAB, encode, shapes_schedule

KINDS = ("mask", "uniform", "mask_replace")
LOG_FLOOR = -70.0  # log-probabilities below this are reported as this (as the library's LOG_FLOOR)
LOG_GRID = 2.0 ** -32  # log-likelihoods are rounded to multiples of this: their sums are exact (`on_grid`)


@dataclass(frozen=True)
class Grammar:
    """The scene grammar the oracle enumerates: ShapesBench's by default, smaller ones for brute-force tests."""

    size: int = sb.SIZE  # image side in pixels
    colours: tuple[str, ...] = sb.COLOURS  # colour names; id = index
    shapes: tuple[str, ...] = sb.SHAPES
    sizes: tuple[tuple[str, int], ...] = tuple(sb.SIZES.items())  # (size name, box side)
    tries: int = 200  # draws of the second object before the scene is redrawn

    def __post_init__(self) -> None:
        if len(self.colours) < 3 or any(side > self.size for _, side in self.sizes) or not self.shapes:
            raise DiceError(f"a grammar needs >= 3 colours, >= 1 shape and sides <= size; got {self}")


@dataclass(frozen=True)
class OracleConfig:
    """The `shapes` model's interface the oracle shares: word-id length and mask-and-replace schedule."""

    prompt_len: int = 14
    num_steps: int = 16  # T of the mask-and-replace transition schedule (as the `shapes` model's)
    replace_share: float = 0.1  # share of the multinomial corruption that is uniform replacement


class Tables:
    """Placements of every (shape, size, position), their pixel masks, and the generator's pair prior."""

    def __init__(self, g: Grammar):
        self.grammar = g
        n = g.size
        self.num_colours = len(g.colours)
        self.sides = [side for _, side in g.sizes]
        self.npos = [(n - s + 1) ** 2 for s in self.sides]
        # size-positions: (size index, row, col); placements: shape-major over size-positions
        sp = [(z, r, c) for z, s in enumerate(self.sides) for r in range(n - s + 1) for c in range(n - s + 1)]
        self.sp_size = np.array([z for z, _, _ in sp])
        self.sp_row = np.array([r for _, r, _ in sp])
        self.sp_col = np.array([c for _, _, c in sp])
        self.num_sp = len(sp)
        side = np.array(self.sides)[self.sp_size]
        self.sp_offset = {z: int(np.flatnonzero(self.sp_size == z)[0]) for z in range(len(self.sides))}
        pix = np.zeros((len(g.shapes), self.num_sp, n, n), dtype=bool)
        for h, shape in enumerate(g.shapes):
            for i, (z, r, c) in enumerate(sp):
                s = self.sides[z]
                pix[h, i, r:r + s, c:c + s] = sb._template(shape, s)
        self.pixels = torch.from_numpy(pix.reshape(len(g.shapes) * self.num_sp, n * n)).double()  # [npl, D]
        # apart: boxes leave one empty row or column between them
        top, left, bottom, right = self.sp_row, self.sp_col, self.sp_row + side - 1, self.sp_col + side - 1
        self.apart = ((right[:, None] + 1 < left[None]) | (right[None] + 1 < left[:, None])
                      | (bottom[:, None] + 1 < top[None]) | (bottom[None] + 1 < top[:, None]))  # [NP, NP]
        npos = np.array(self.npos, dtype=np.float64)[self.sp_size]  # positions of each size-position's size
        nz = len(self.sides)
        q = (self.apart / npos[None]).sum(1) / nz  # share of second-object draws apart from each first object
        with np.errstate(divide="ignore", invalid="ignore"):
            gq = np.where(q > 0, (1 - (1 - q) ** g.tries) / q, float(g.tries))
        self.success = float(((1 - (1 - q) ** g.tries) / npos).sum() / nz)  # P(a second object fits)
        self.pair = self.apart * (gq[:, None] + gq[None]) / (npos[:, None] * npos[None])  # unordered-pair weight
        self.log_npos = np.log(npos)
        cy, cx = self.sp_row + (side - 1) / 2, self.sp_col + (side - 1) / 2
        self.before = (cx[:, None] < cx[None]) | ((cx[:, None] == cx[None]) & (cy[:, None] < cy[None]))  # i before j

    def placement(self, shape: int, size_pos: np.ndarray) -> np.ndarray:
        return shape * self.num_sp + size_pos


@lru_cache(maxsize=8)
def tables(g: Grammar) -> Tables:
    """Return the (cached) placement tables of a grammar."""
    return Tables(g)


@dataclass
class PromptTable:
    """Every scene of one prompt: background, per-object placement and colour, log prior (normalised)."""

    background: int
    placements: np.ndarray  # [S, n] placement index per object
    colours: np.ndarray  # [n] colour id per object
    log_prior: np.ndarray  # [S]
    used: torch.Tensor = field(init=False)  # [U] the placements any scene uses
    local: torch.Tensor = field(init=False)  # [S, n] index into `used`

    def __post_init__(self) -> None:
        used, local = np.unique(self.placements, return_inverse=True)
        self.used, self.local = torch.from_numpy(used), torch.from_numpy(local.reshape(self.placements.shape))


def prompt_table(text: str, g: Grammar) -> PromptTable:
    """Return the scenes consistent with `text` and their prior under the generator (normalised)."""
    tb = tables(g)
    bg_name, objs = sb.parse_prompt(text)
    names = {n: i for i, n in enumerate(g.colours)}
    shapes = {s: i for i, s in enumerate(g.shapes)}
    sizes = {s: i for i, (s, _) in enumerate(g.sizes)}
    unknown = [w for o in objs for w, table in zip(o, (sizes, names, shapes)) if w not in table]
    if bg_name not in names or unknown:
        raise DiceError(f"prompt {text!r} uses {unknown or bg_name!r}, outside this grammar ({g})")
    bg = names[bg_name]
    cols = np.array([names[c] for _, c, _ in objs])
    if len(objs) > 2 or bg in cols or len(set(cols.tolist())) != len(cols):
        raise DiceError(f"prompt {text!r} describes no ShapesBench scene: 1 or 2 objects of distinct colours, "
                        "none the background's")
    sps = [np.arange(tb.npos[sizes[z]]) + tb.sp_offset[sizes[z]] for z, _, _ in objs]
    if len(objs) == 1:
        pl = tb.placement(shapes[objs[0][2]], sps[0])[:, None]
        log_prior = np.full(len(pl), -math.log(len(pl)))
    else:
        a, b = np.meshgrid(sps[0], sps[1], indexing="ij")
        a, b = a.ravel(), b.ravel()
        keep = tb.apart[a, b] & tb.before[a, b]
        a, b = a[keep], b[keep]
        w = tb.pair[a, b]
        pl = np.stack([tb.placement(shapes[objs[0][2]], a), tb.placement(shapes[objs[1][2]], b)], 1)
        log_prior = np.log(w / w.sum())
    return PromptTable(bg, pl, cols, log_prior)


def log_likelihoods(x: torch.Tensor, t: torch.Tensor, k: int, kinds: tuple[str, ...], replace_share: float,
                    floor: float) -> torch.Tensor:
    """Return log p(x_t | x0 = c) per kind, pixel and colour: [B, n_kinds, D, K] float64 (floored, on LOG_GRID)."""
    t = t.double().clamp(0.0, 1.0).view(-1, 1, 1)  # [B, 1, 1]
    is_mask = (x == k).unsqueeze(-1)  # [B, D, 1]
    same = (x.unsqueeze(-1) == torch.arange(k, device=x.device)).double()  # [B, D, K]
    out = []
    for kind in kinds:
        if kind == "mask":
            lik = torch.where(is_mask, t, same * (1 - t))
        elif kind == "uniform":
            lik = torch.where(is_mask, torch.zeros_like(t), same * (1 - t) + t / k)
        else:
            level = t.clamp(max=1 - 1e-6)  # as the schedule: abar_T > 0
            lik = torch.where(is_mask, (1 - replace_share) * level, same * (1 - level) + replace_share * level / k)
        out.append(torch.log((1 - floor) * lik + floor / (k + 1)))
    return on_grid(torch.stack(out, 1))


def on_grid(log_values: torch.Tensor) -> torch.Tensor:
    """Return float64 `log_values` rounded to the nearest multiple of LOG_GRID.

    Sums of up to 2^16 grid values of magnitude below 2^5 (log-likelihoods floored at floor >= 1e-12) are
    exact in float64 (2^(16 + 5 + 32) = 2^53): the enumeration's log-likelihood sums (einsum / matmul over pixels) come out bit for bit
    the same whatever the BLAS kernel, instruction set or thread split sums them in.
    """
    return torch.round(log_values * (1 / LOG_GRID)) * LOG_GRID


class ShapesOracle:
    """The exact DiscreteDenoiser of ShapesBench: logits(x [B, D] in 0..K, t [B], cond) -> [B, D, K] log-probs."""

    def __init__(self, grammar: Grammar | None = None, kinds: tuple[str, ...] = KINDS, floor: float = 1e-6,
                 config: OracleConfig | None = None, cache_size: int = 512):
        self.grammar = grammar or Grammar()
        bad = [k for k in kinds if k not in KINDS]
        if not kinds or bad:
            raise DiceError(f"unknown corruption kind(s) {bad or kinds!r}; expected some of {KINDS}")
        if not 0 < floor < 1:
            raise DiceError(f"floor must be in (0, 1), got {floor!r}")
        self.kinds, self.floor = tuple(kinds), float(floor)
        self.config = config or OracleConfig()
        self.num_classes = len(self.grammar.colours)
        self.mask_id = self.num_classes
        self.num_positions = self.grammar.size ** 2
        self.transition_schedule = shapes_schedule(self.config.num_steps, self.config.replace_share)
        self.tables = tables(self.grammar)
        self._prompts: dict[str, PromptTable] = {}
        self._cache_size = cache_size
        self._null_ids = encode([""], self.config.prompt_len)

    device = torch.device("cpu")

    @property
    def null_cond(self) -> torch.Tensor:
        """Return the null prompt's word ids [1, L] (as the `shapes` model's)."""
        return self._null_ids

    def prompts(self, cond: Any, rows: int) -> list[str]:
        """Return one prompt text per row ("" = the null prompt) from word ids [B, L], a list of strings or None."""
        if cond is None:
            return [""] * rows
        if isinstance(cond, str):
            cond = [cond]
        if isinstance(cond, (list, tuple)):
            texts = [str(c) for c in cond]
        elif isinstance(cond, torch.Tensor) and cond.dim() == 2:
            texts = [" ".join(VOCAB[i] for i in r if VOCAB[i] != "<pad>") for r in cond.long().cpu().tolist()]
            texts = ["" if s == "<null>" else s for s in texts]
        else:
            raise DiceError(f"cond must be word ids [B, {self.config.prompt_len}] (dicelib.image.shapes_model.encode), "
                            f"a list of prompts or None; got {getattr(cond, 'shape', type(cond).__name__)}")
        if len(texts) == 1 and rows > 1:
            texts = texts * rows
        if len(texts) != rows:
            raise DiceError(f"cond has {len(texts)} rows but x has {rows}")
        return texts

    def table(self, text: str) -> PromptTable:
        """Return the scene table of a prompt (cached, oldest dropped first)."""
        if text not in self._prompts:
            if len(self._prompts) >= self._cache_size:
                self._prompts.pop(next(iter(self._prompts)))
            self._prompts[text] = prompt_table(text, self.grammar)
        return self._prompts[text]

    def marginals(self, x: torch.Tensor, t: torch.Tensor, cond: Any, kinds: tuple[str, ...] | None = None) -> torch.Tensor:
        """Return p(x0_i = c | x_t, t, prompt) [B, D, K] float64 (under `kinds` instead of the oracle's own when given)."""
        x = torch.as_tensor(x).long().cpu()
        if x.dim() != 2 or x.shape[1] != self.num_positions:
            raise DiceError(f"the oracle takes x of shape [B, {self.num_positions}], got {list(x.shape)}")
        if bool((x < 0).any()) or bool((x > self.mask_id).any()):
            raise DiceError(f"x must hold colour ids 0..{self.num_classes - 1} or [MASK] = {self.mask_id}")
        t = torch.as_tensor(t).cpu().double().reshape(-1).expand(x.shape[0])
        texts = self.prompts(cond, x.shape[0])
        loglik = log_likelihoods(x, t, self.num_classes, kinds or self.kinds, self.config.replace_share, self.floor)
        out = torch.empty(x.shape[0], self.num_positions, self.num_classes, dtype=torch.float64)
        groups: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(text, []).append(i)
        for text, rows in groups.items():
            idx = torch.tensor(rows)
            out[idx] = self._null(loglik[idx]) if text == "" else self._prompt(loglik[idx], self.table(text))
        return out

    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Return log p(x0 | x_t, t, cond) [B, D, K] float32, floored at LOG_FLOOR (the DiscreteDenoiser entry point)."""
        device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        return self.marginals(x, t, cond).log().clamp(min=LOG_FLOOR).float().to(device)

    def _prompt(self, loglik: torch.Tensor, tab: PromptTable) -> torch.Tensor:
        """Return marginals [R, D, K] for rows of one prompt: enumeration over its scene table.

        Every marginal is a sum of non-negative posterior weights (the background's too: the weight of
        the scenes leaving the pixel uncovered, never one minus the objects' cover), so a tiny marginal
        keeps its relative precision and its log does not depend on the order BLAS sums in.
        """
        r, k, bg = loglik.shape[0], self.num_classes, tab.background
        pixels = self.tables.pixels[tab.used]  # [U, D]
        cols = torch.from_numpy(np.concatenate([[bg], tab.colours]))
        a = torch.einsum("pd,rkdc->rkpc", pixels, loglik[..., cols])  # [R, nk, U, 1 + n]: exact sums (grid values)
        ll = loglik[..., bg].sum(-1, keepdim=True)  # [R, nk, 1]
        for j in range(len(tab.colours)):
            pl = tab.local[:, j]
            ll = ll + a[:, :, pl, j + 1] - a[:, :, pl, 0]  # [R, nk, S]
        lw = torch.logsumexp(ll, 1) + torch.from_numpy(tab.log_prior)  # uniform kind prior: a constant
        w = torch.softmax(lw, -1)  # [R, S]
        u = len(tab.used)
        out = torch.zeros(r, self.num_positions, k, dtype=torch.float64)
        if len(tab.colours) == 1:
            v = torch.zeros(r, u, dtype=torch.float64).index_add_(1, tab.local[:, 0], w)  # placement posterior
            out[..., tab.colours[0]] = v @ pixels
            out[..., bg] = v @ (1 - pixels)
            return out
        pair = tab.local[:, 0] * u + tab.local[:, 1]
        wp = torch.zeros(r, u * u, dtype=torch.float64).index_add_(1, pair, w).view(r, u, u)  # [R, U_a, U_b]
        for j, c in enumerate(tab.colours.tolist()):
            out[..., c] = wp.sum(2 - j) @ pixels  # [R, D]: the posterior of object j covering the pixel
        free = 1 - pixels  # [U, D]
        out[..., bg] = ((wp @ free) * free).sum(1)  # sum over (a, b) of w(a, b) [a leaves it] [b leaves it]
        return out

    def _null(self, loglik: torch.Tensor) -> torch.Tensor:
        """Return marginals [R, D, K] under the null prompt: d log Z / d loglik of the factorised sum over scenes."""
        with torch.enable_grad():
            leaf = loglik.detach().clone().requires_grad_(True)
            log_z = null_log_partition(leaf, self.tables)  # [R]
            (grad,) = torch.autograd.grad(log_z.sum(), leaf)
        return grad.sum(1).clamp(min=0.0)  # sum over kinds: each kind's share of the posterior


def null_log_partition(loglik: torch.Tensor, tb: Tables) -> torch.Tensor:
    """Return log Z [R] = log sum over every scene of prior x likelihood (uniform prior over the kinds).

    loglik [R, nk, D, K]. With loglik = 0 (no evidence) it is log 1 = 0: the prior sums to one.
    """
    g = tb.grammar
    r, nk, _, k = loglik.shape
    nsh, nz, nsp = len(g.shapes), len(tb.sides), tb.num_sp
    a = torch.einsum("pd,rkdc->rkpc", tb.pixels, loglik)  # [R, nk, npl, K]
    base = loglik.sum(2)  # [R, nk, K]: every pixel background b
    d = a.unsqueeze(2) - a.permute(0, 1, 3, 2).unsqueeze(-1)  # [R, nk, b, npl, c]: d = a[.., p, c] - a[.., p, b]
    allowed = ~torch.eye(k, dtype=torch.bool)  # c != b
    neg = torch.tensor(float("-inf"), dtype=torch.float64)
    d = torch.where(allowed.view(1, 1, k, 1, k), d, neg)
    log_npos = torch.from_numpy(np.tile(tb.log_npos, nsh))  # [npl]
    log_c = -math.log(k) - math.log(k - 1) - math.log(nsh) - math.log(nz)  # background, colour, shape, size
    # one object: sum over placements and colours
    log_z1 = base + torch.logsumexp((d - log_npos.view(1, 1, 1, -1, 1)).flatten(-2), -1) + log_c + math.log(0.5)
    # two objects: sum over unordered pairs = half the sum over ordered (p, cA), (q, cB), cA != cB, both != b
    m = d.amax(3, keepdim=True).clamp(min=-1e300)  # [R, nk, b, 1, c]: per-column shift (finite)
    e = torch.exp(d - m)  # zero where c == b
    e = e.view(r, nk, k, nsh, nsp, k).sum(3)  # [R, nk, b, NP, c]: the pair prior does not depend on the shapes
    pair = torch.from_numpy(tb.pair)  # [NP, NP]
    pe = torch.einsum("pq,rkbqj->rkbpj", pair, e)  # [R, nk, b, NP, c]
    mm = torch.einsum("rkbpi,rkbpj->rkbij", e, pe)  # [R, nk, b, cA, cB]
    shift = m.squeeze(3)  # [R, nk, b, c]
    b_, ca, cb = torch.arange(k).view(k, 1, 1), torch.arange(k).view(1, k, 1), torch.arange(k).view(1, 1, k)
    valid = (ca != cb) & (b_ != ca) & (b_ != cb)  # [b, cA, cB]
    log_mm = torch.where(valid, torch.log(mm.clamp(min=1e-300)), neg) + shift.unsqueeze(-1) + shift.unsqueeze(-2)
    log_c2 = (-math.log(k) - math.log(k - 1) - math.log(k - 2) - 2 * math.log(nsh) - 2 * math.log(nz)
              - math.log(tb.success) + math.log(0.5) + math.log(0.5))  # n = 2; background; colours; shapes; sizes; ordered twice
    log_z2 = base + torch.logsumexp(log_mm.flatten(-2), -1) + log_c2
    per_kind = torch.logaddexp(torch.logsumexp(log_z1, -1), torch.logsumexp(log_z2, -1))  # [R, nk]
    return torch.logsumexp(per_kind, -1) - math.log(nk)
