"""Return the exact next-scale denoiser of ShapesBench: p(map_k | maps_<k, prompt) by enumerating scenes.

Generative story (what the oracle is exact for): a scene is drawn from the ShapesBench generator's
prior given the prompt (`shapes_oracle.prompt_table`: the same scenes and prior as the masked
oracle); its render's pyramid (`shapes_pyramid`: window modes at sides 1, 2, 4, 8, 12, 14, 15, 16) gives the
clean maps; every token of every map is then the clean token with probability 1 - floor and a
uniform colour with probability floor. So a prefix that no scene explains (an edit's own prefix)
still has a defined posterior: each prefix token that disagrees with a scene's pyramid costs
log(floor / K) instead of ruling the scene out. `scale_logits(prefix, cond)` returns, per token of
scale k, log of (1 - floor) * sum_scenes w(scene) [pyr_k(scene)_i = c] + floor / K with
w = the posterior over scenes given the prefix: the exact per-token marginals of
p(map_k | maps_<k, prompt) (a next-scale model draws the tokens of a scale independently).

Null prompt (guidance, unconditional sampling): every scene of the grammar, enumerated as
geometry (shapes, sizes, positions; about 2.4e5 for ShapesBench) x colours. A geometry fixes, for
every block of every scale, which role wins the block mode (background, first object, second
object, or a tie between two of them, broken by the lower colour id), so the prefix likelihood of
a geometry under all colour choices is a sum of small per-role tables, and no colour assignment
is enumerated per pixel. Exact for the same story; tested against brute force on a small grammar.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..errors import DiceError
from . import shapes_pyramid as pyr
from .shapes_oracle import LOG_FLOOR, Grammar, ShapesOracle, Tables, tables

PRUNE = 60.0  # nats: geometries whose best colour choice lies this far below the best scene are left out of the
# null prompt's sum (their share is below e^-60 x 1.6e5 geometries x 336 colourings < 1e-18: below float64 rounding)
CHUNK = 16384  # geometries per block of the null prompt's sum (bounds memory at about 70 MB per row)
# block-mode winner codes: 0 background, 1 first object, 2 second object, 3 tie bg/first, 4 tie bg/second,
# 5 tie first/second (a three-way tie needs a window area divisible by three: never, areas are powers of two)
TIES = ((0, 1), (0, 2), (1, 2))


def _block_counts(pixels: torch.Tensor, size: int) -> np.ndarray:
    """Return each placement's pixel count in every window of every scale [npl, P] (scales concatenated)."""
    pix = pixels.reshape(-1, size, size)
    return torch.cat([pyr.window_sums(pix, s).flatten(1) for s in pyr.scale_sides(size)], 1).numpy().astype(np.int16)


def _window_areas(size: int) -> np.ndarray:
    """Return the pixel count of every window of every scale [P] (scales concatenated)."""
    return np.concatenate([pyr.window_sums(np.ones((1, size, size)), s).ravel().numpy() for s in pyr.scale_sides(size)])


def _codes(n1: np.ndarray, n2: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Return the winner code of each block (counts of the first and second object; block sizes) [G, P] int8."""
    n0 = block - n1 - n2
    code = np.zeros(n1.shape, dtype=np.int8)
    code[(n1 > n0) & (n1 > n2)] = 1
    code[(n2 > n0) & (n2 > n1)] = 2
    code[(n0 == n1) & (n0 > n2)] = 3
    code[(n0 == n2) & (n0 > n1)] = 4
    code[(n1 == n2) & (n1 > n0)] = 5
    if ((n0 == n1) & (n1 == n2)).any():
        raise DiceError("a three-way tie in a window: the pyramid's window areas must not be multiples of three")
    return code


class NullScenes:
    """Every scene geometry of a grammar with its prior and its per-block winner codes (one and two objects)."""

    def __init__(self, g: Grammar):
        tb: Tables = tables(g)
        k, nsh, nz, n = len(g.colours), len(g.shapes), len(tb.sides), g.size
        cnt = _block_counts(tb.pixels, n)  # [npl, P]
        block = _window_areas(n)
        npos = np.exp(tb.log_npos)  # [NP]
        # one object: every placement; prior 1/2 x shape x size x position (colours apart)
        self.codes1 = _codes(cnt, np.zeros_like(cnt), block)
        self.log_prior1 = np.log(0.5 / (nsh * nz * np.tile(npos, nsh)))
        # two objects: unordered apart size-position pairs x both shapes; prior 1/2 x pair / (sizes^2 shapes^2 success)
        a, b = np.nonzero(np.triu(tb.apart, 1))
        ha, hb = np.meshgrid(np.arange(nsh), np.arange(nsh), indexing="ij")
        pa = (ha.ravel()[None] * tb.num_sp + a[:, None]).ravel()
        pb = (hb.ravel()[None] * tb.num_sp + b[:, None]).ravel()
        w = np.repeat(tb.pair[a, b], nsh * nsh)
        self.log_prior2 = np.log(0.5 * w / (nz * nz * nsh * nsh * tb.success))
        self.codes2 = np.concatenate([_codes(cnt[pa[i:i + CHUNK]], cnt[pb[i:i + CHUNK]], block)
                                      for i in range(0, len(pa), CHUNK)])
        self.num_colours = k
        self._groups: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def groups(self, which: int, lo: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (distinct prefix codes [U, lo], each geometry's group [G], each group's log prior mass [U]) of the
        one-object (0) or two-object (1) geometries, for a prefix of `lo` tokens (cached)."""
        if (which, lo) not in self._groups:
            codes, log_prior = (self.codes1, self.log_prior1) if which == 0 else (self.codes2, self.log_prior2)
            rows = np.ascontiguousarray(codes[:, :lo]).view(f"V{max(lo, 1)}") if lo else np.zeros((len(codes), 1), "V1")
            _, first, inv = np.unique(rows.reshape(-1), return_index=True, return_inverse=True)  # byte rows: a fast sort
            uniq = codes[first, :lo]
            inv = torch.from_numpy(inv.reshape(-1).astype(np.int64))
            lp = torch.from_numpy(log_prior)
            top = float(lp.max())
            mass = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, torch.exp(lp - top)).log() + top
            self._groups[which, lo] = (torch.from_numpy(uniq.astype(np.int64)), inv, mass)
        return self._groups[which, lo]


@lru_cache(maxsize=2)
def null_scenes(g: Grammar) -> NullScenes:
    """Return the (cached) null-prompt geometries of a grammar."""
    return NullScenes(g)


def _min_onehot(k: int) -> torch.Tensor:
    """Return [K, K, K] with 1 at (x, y, min(x, y)): where a tie between colours x and y lands."""
    x, y = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    return torch.nn.functional.one_hot(torch.minimum(x, y), k).double()


class ShapesNextScaleOracle:
    """The exact NextScaleDenoiser of ShapesBench: scale_logits(prefix, cond) -> [B, h_k * w_k, K] log-probs."""

    method = "next_scale"

    def __init__(self, grammar: Grammar | None = None, floor: float = 1e-6, cache_size: int = 256):
        if not 0 < floor < 1:
            raise DiceError(f"floor must be in (0, 1), got {floor!r}")
        self.masked = ShapesOracle(grammar, cache_size=cache_size)  # prompt parsing, scene tables, word ids
        self.grammar = self.masked.grammar
        self.floor = float(floor)
        self.num_classes = self.masked.num_classes
        self.scales = pyr.scales(self.grammar.size)
        self.sizes = [h * w for h, w in self.scales]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).tolist()
        self.config = self.masked.config
        self._pyramids: dict[str, np.ndarray] = {}
        self._cache_size = cache_size
        self._null_memo: dict[tuple[int, bytes], torch.Tensor] = {}  # null marginals by (k, prefix): guidance repeats them

    device = torch.device("cpu")

    @property
    def null_cond(self) -> torch.Tensor:
        """Return the null prompt's word ids [1, L] (as the masked oracle's)."""
        return self.masked.null_cond

    def pyramid(self, tokens: Any) -> list[torch.Tensor]:
        """Return the pyramid maps of images [B, D] (`shapes_pyramid.pyramid` at this grammar's size)."""
        return pyr.pyramid(tokens, self.grammar.size, self.num_classes)

    def scene_pyramids(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Return (every scene's pyramid maps concatenated [S, P] int8, log prior [S]) of a prompt (cached)."""
        tab = self.masked.table(text)
        if text not in self._pyramids:
            if len(self._pyramids) >= self._cache_size:
                self._pyramids.pop(next(iter(self._pyramids)))
            pix = self.masked.tables.pixels.numpy() > 0
            img = np.full((len(tab.placements), pix.shape[1]), tab.background, dtype=np.int64)
            for j, c in enumerate(tab.colours.tolist()):
                img = np.where(pix[tab.placements[:, j]], c, img)
            maps = self.pyramid(img)
            self._pyramids[text] = torch.cat(maps, 1).numpy().astype(np.int8)
        return self._pyramids[text], tab.log_prior

    def _check_prefix(self, prefix: list[torch.Tensor], cond: Any) -> tuple[torch.Tensor, int]:
        """Return (the prefix maps concatenated [B, P] int64, B); DiceError for a bad prefix."""
        if not isinstance(prefix, (list, tuple)) or len(prefix) >= len(self.scales):
            raise DiceError(f"prefix must be a list of 0..{len(self.scales) - 1} maps (scales {self.scales}), "
                            f"got {type(prefix).__name__} of length {len(prefix) if hasattr(prefix, '__len__') else '?'}")
        if not prefix:
            if isinstance(cond, torch.Tensor):
                rows = cond.shape[0]
            elif isinstance(cond, (list, tuple)):
                rows = len(cond)
            else:
                rows = 1
            return torch.zeros(rows, 0, dtype=torch.long), rows
        maps = [torch.as_tensor(m).long().cpu() for m in prefix]
        rows = maps[0].shape[0]
        for j, m in enumerate(maps):
            if m.dim() != 2 or m.shape != (rows, self.sizes[j]):
                raise DiceError(f"prefix map {j} must have shape [{rows}, {self.sizes[j]}] (scale {self.scales[j]}), "
                                f"got {list(m.shape)}")
            if bool((m < 0).any()) or bool((m >= self.num_classes).any()):
                raise DiceError(f"prefix map {j} must hold colour ids 0..{self.num_classes - 1}")
        return torch.cat(maps, 1), rows

    def marginals(self, prefix: list[torch.Tensor], cond: Any) -> torch.Tensor:
        """Return p(map_k token i = c | maps_<k, prompt) [B, h_k * w_k, K] float64, k = len(prefix)."""
        flat, rows = self._check_prefix(prefix, cond)
        texts = self.masked.prompts(cond, rows)
        k = len(prefix)
        out = torch.empty(rows, self.sizes[k], self.num_classes, dtype=torch.float64)
        groups: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(text, []).append(i)
        for text, idx in groups.items():
            sel = torch.tensor(idx)
            out[sel] = self._null(flat[sel], k) if text == "" else self._prompt(flat[sel], k, text)
        return (1 - self.floor) * out + self.floor / self.num_classes

    def scale_logits(self, prefix: list[torch.Tensor], cond: Any) -> torch.Tensor:
        """Return log p(map_k | maps_<k, cond) [B, h_k * w_k, K] float32, k = len(prefix) (the NextScaleDenoiser call)."""
        return self.marginals(prefix, cond).log().clamp(min=LOG_FLOOR).float()

    def _log_match(self) -> tuple[float, float]:
        """Return (log-likelihood of a prefix token that equals the scene's, of one that differs)."""
        k = self.num_classes
        return math.log(1 - self.floor + self.floor / k), math.log(self.floor / k)

    def _prompt(self, flat: torch.Tensor, k: int, text: str) -> torch.Tensor:
        """Return clean-token marginals [R, n_k, K] of rows of one prompt: a weighted sum over its scenes."""
        maps, log_prior = self.scene_pyramids(text)
        lo, hi = self.offsets[k], self.offsets[k + 1]
        hit, miss = self._log_match()
        matches = (torch.from_numpy(maps[:, :lo]).long()[None] == flat[:, None]).sum(-1).double()  # [R, S]
        w = torch.softmax(matches * (hit - miss) + torch.from_numpy(log_prior), -1)  # [R, S]
        cur = torch.from_numpy(maps[:, lo:hi]).long()  # [S, n_k]
        return torch.stack([w @ (cur == c).double() for c in range(self.num_classes)], -1)

    def _null(self, flat: torch.Tensor, k: int) -> torch.Tensor:
        """Return clean-token marginals [R, n_k, K] of rows under the null prompt: every geometry x colours."""
        ns = null_scenes(self.grammar)
        kc = self.num_classes
        lo, hi = self.offsets[k], self.offsets[k + 1]
        hit, miss = self._log_match()
        tok = torch.nn.functional.one_hot(flat, kc).double() * (hit - miss) + miss  # [R, P, K]: log-lik per colour
        tie = _min_onehot(kc)
        colours = torch.arange(kc)
        b_, x_, y_ = colours.view(-1, 1, 1), colours.view(1, -1, 1), colours.view(1, 1, -1)
        valid2 = torch.where((b_ != x_) & (b_ != y_) & (x_ != y_), 0.0, -math.inf).double() - math.log(kc * (kc - 1) * (kc - 2))
        valid1 = torch.where(b_[..., 0] != x_[..., 0], 0.0, -math.inf).double() - math.log(kc * (kc - 1))
        out = torch.zeros(flat.shape[0], hi - lo, kc, dtype=torch.float64)
        for r in range(flat.shape[0]):
            key = (k, flat[r].numpy().tobytes())
            if key not in self._null_memo:
                if len(self._null_memo) >= 4 * self._cache_size:
                    self._null_memo.pop(next(iter(self._null_memo)))
                self._null_memo[key] = self._null_row(ns, tok[r], k, tie, valid1, valid2)
            out[r] = self._null_memo[key]
        return out

    def _null_row(self, ns: NullScenes, tok: torch.Tensor, k: int, tie: torch.Tensor,
                  valid1: torch.Tensor, valid2: torch.Tensor) -> torch.Tensor:
        """Return one row's null marginals [n_k, K]: geometries grouped by their prefix codes (one likelihood per
        group), every group whose best colour choice lies within PRUNE of the best scene."""
        lo, hi = self.offsets[k], self.offsets[k + 1]
        sets = []
        for j, two in ((0, False), (1, True)):
            codes, log_prior = (ns.codes1, ns.log_prior1) if j == 0 else (ns.codes2, ns.log_prior2)
            uniq, inv, mass = ns.groups(j, lo)
            s = torch.stack([(uniq == code).double() @ tok for code in range(6)], 1)  # [U, 6, K]: log-lik per role colour
            sets.append((codes, log_prior, inv, mass, s, two, s.amax(2).sum(1) + mass))  # last: an upper bound per group
        best = max(range(2), key=lambda j: float(sets[j][6].max()))
        *_, mass, s, two, ub = sets[best]
        g = int(ub.argmax())
        floor = float(self._log_joint(list(s[g:g + 1].unbind(1)), mass[g:g + 1], tie, valid2 if two else valid1, two).max())
        total, acc = 0.0, torch.zeros(hi - lo, self.num_classes, dtype=torch.float64)
        for codes, log_prior, inv, mass, s, two, ub in sets:
            keep = torch.nonzero(ub >= floor - PRUNE).flatten()
            ll = self._log_joint(list(s[keep].unbind(1)), mass[keep], tie, valid2 if two else valid1, two)
            e = torch.exp(ll - floor)  # ll <= floor + (what the bound allows): no overflow in float64
            total += float(e.sum())
            roles = self._role_weights(e, tie, two)  # [G_kept, 6, K]
            slot = torch.full((len(mass),), -1, dtype=torch.long)
            slot[keep] = torch.arange(len(keep))
            members = torch.nonzero(slot[inv] >= 0).flatten()
            for i in range(0, len(members), CHUNK):
                m = members[i:i + CHUNK]
                share = torch.exp(torch.from_numpy(log_prior[m.numpy()]) - mass[inv[m]])  # prior share within its group
                w = roles[slot[inv[m]]] * share[:, None, None]  # [M, 6, K]
                acc += w[:, 0].sum(0)  # every block the background's, then the blocks an object wins or ties
                cur = torch.from_numpy(codes[m.numpy(), lo:hi].astype(np.int64))
                g, i = torch.nonzero(cur).unbind(1)
                acc.index_add_(0, i, w[g, cur[g, i]] - w[g, 0])
        return acc / total

    @staticmethod
    def _log_joint(s: list[torch.Tensor], lp: torch.Tensor, tie: torch.Tensor, valid: torch.Tensor,
                   two: bool) -> torch.Tensor:
        """Return log prior + log-lik of every geometry x colour choice: [G, b, cA] (one object) or [G, b, cA, cB]."""
        t3 = torch.einsum("gc,xyc->gxy", s[3], tie)  # a tie between background and first: colour min(b, cA)
        if not two:
            return s[0][:, :, None] + s[1][:, None, :] + t3 + valid + lp[:, None, None]
        t4 = torch.einsum("gc,xyc->gxy", s[4], tie)
        t5 = torch.einsum("gc,xyc->gxy", s[5], tie)
        return (s[0][:, :, None, None] + s[1][:, None, :, None] + s[2][:, None, None, :] + t3[:, :, :, None]
                + t4[:, :, None, :] + t5[:, None, :, :] + valid + lp[:, None, None, None])

    @staticmethod
    def _role_weights(e: torch.Tensor, tie: torch.Tensor, two: bool) -> torch.Tensor:
        """Return per geometry group the weight of each role's colour [G, 6, K] (role codes as in TIES)."""
        if two:
            eb = e.sum(3)  # [G, b, cA]
            roles = [eb.sum(2), eb.sum(1), e.sum((1, 2)), torch.einsum("gxy,xyc->gc", eb, tie),
                     torch.einsum("gxy,xyc->gc", e.sum(2), tie), torch.einsum("gxy,xyc->gc", e.sum(1), tie)]
        else:
            z = torch.zeros_like(e[:, :, 0])
            roles = [e.sum(2), e.sum(1), z, torch.einsum("gxy,xyc->gc", e, tie), z, z]
        return torch.stack(roles, 1)
