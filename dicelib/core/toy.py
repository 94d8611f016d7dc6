"""Tiny random denoisers that follow the DiscreteDenoiser protocol, for tests and teaching.

Nobody trained them: the central invariant (exact reconstruction) must hold for any model, so
these exercise it without a checkpoint. Their predictions depend on every input token (through a
pooled context), on the noise level t and on the condition, like a real network's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DiceError


class RandomDenoiser(nn.Module):
    """A randomly initialised conditional denoiser over K classes and D positions.

    Inputs: x [B, D] in 0..K (index K is [MASK], so both methods apply), t [B] in [0, 1], cond a
    LongTensor [B] of condition ids in 0..num_conds-1 (num_conds is the null condition).
    `scale` sets how peaked the predictions are.
    """

    def __init__(self, num_classes: int, num_positions: int, num_conds: int = 4, hidden: int = 16,
                 scale: float = 3.0, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.num_classes = num_classes
        self.num_positions = num_positions
        self.mask_id = num_classes
        self.num_conds = num_conds
        self.scale = scale

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=gen) / shape[0] ** 0.5, requires_grad=False)

        self.tokens = param(num_classes + 1, hidden)
        self.positions = param(num_positions, hidden)
        self.conds = param(num_conds + 1, hidden)
        self.time = param(1, hidden)
        self.mix = param(hidden, hidden)
        self.out = param(hidden, num_classes)

    @property
    def null_cond(self) -> torch.Tensor:
        return torch.tensor([self.num_conds])

    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Return logits [B, D, K] for x [B, D], t [B] and condition ids [B]."""
        if x.dim() != 2 or x.shape[1] != self.num_positions:
            raise DiceError(f"RandomDenoiser takes x of shape [B, {self.num_positions}], got {list(x.shape)}")
        if cond is None:
            cond = self.null_cond.expand(x.shape[0])
        h = self.tokens[x] + self.positions + self.conds[cond].unsqueeze(1) + t.view(-1, 1, 1) * self.time
        h = h + torch.tanh(h.mean(dim=1, keepdim=True) @ self.mix)  # every position sees the whole input
        return self.scale * torch.tanh(h) @ self.out


class RandomNextScaleDenoiser(nn.Module):
    """A randomly initialised conditional next-scale model over K classes and token maps `scales`.

    scale_logits(prefix, cond) for scale k = len(prefix): each position of scale k sees its own
    position, the scale index k, the condition, the token at its place in scale k - 1 (nearest
    upsampling, as VAR feeds the previous map) and a pooled context of every prefix token, so the
    logits change with any prefix token, the scale and the condition, like a real network's.
    cond: a LongTensor [B] of condition ids in 0..num_conds-1 (num_conds is the null condition).
    """

    def __init__(self, num_classes: int, scales=((1, 1), (2, 2), (3, 3)), num_conds: int = 4, hidden: int = 16,
                 scale: float = 3.0, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.num_classes = num_classes
        self.scales = [(int(h), int(w)) for h, w in scales]
        self.num_conds = num_conds
        self.scale = scale
        sizes = [h * w for h, w in self.scales]
        self.offsets = [sum(sizes[:k]) for k in range(len(sizes) + 1)]

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=gen) / shape[0] ** 0.5, requires_grad=False)

        self.tokens = param(num_classes, hidden)
        self.local = param(num_classes, hidden)
        self.positions = param(self.offsets[-1], hidden)
        self.levels = param(len(self.scales), hidden)
        self.conds = param(num_conds + 1, hidden)
        self.mix = param(hidden, hidden)
        self.out = param(hidden, num_classes)
        # for each position of scale k >= 1, the index of the position of scale k - 1 covering it
        self.parents = [None] + [self._parent_index(self.scales[k - 1], self.scales[k]) for k in range(1, len(self.scales))]

    @staticmethod
    def _parent_index(coarse: tuple[int, int], fine: tuple[int, int]) -> torch.Tensor:
        rows = torch.arange(fine[0]) * coarse[0] // fine[0]
        cols = torch.arange(fine[1]) * coarse[1] // fine[1]
        return (rows.view(-1, 1) * coarse[1] + cols.view(1, -1)).reshape(-1)

    @property
    def null_cond(self) -> torch.Tensor:
        return torch.tensor([self.num_conds])

    def scale_logits(self, prefix: list[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        """Return the logits [B, h_k * w_k, K] of scale k = len(prefix) given maps prefix[j] [B, h_j * w_j] and cond [B]."""
        k = len(prefix)
        if k >= len(self.scales):
            raise DiceError(f"RandomNextScaleDenoiser has {len(self.scales)} scales; got a prefix of {k} maps")
        if cond is None or not isinstance(cond, torch.Tensor):
            raise DiceError("RandomNextScaleDenoiser takes cond as a LongTensor [B] of condition ids")
        for j, m in enumerate(prefix):
            if m.dim() != 2 or m.shape[1] != self.offsets[j + 1] - self.offsets[j] or m.shape[0] != cond.shape[0]:
                raise DiceError(f"prefix[{j}] must be [B, {self.offsets[j + 1] - self.offsets[j]}] with B = {cond.shape[0]}, "
                                f"got {list(m.shape)}")
        h = self.positions[self.offsets[k]:self.offsets[k + 1]] + self.levels[k] + self.conds[cond].unsqueeze(1)
        if k:
            seq = torch.cat(prefix, dim=1)
            pooled = (self.tokens[seq] + self.positions[:self.offsets[k]]).mean(dim=1, keepdim=True)
            h = h + torch.tanh(pooled @ self.mix) + self.local[prefix[-1][:, self.parents[k].to(prefix[-1].device)]]
        return self.scale * torch.tanh(h) @ self.out
