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
