"""Mask-and-replace (VQ-Diffusion) transition math in log space (SPEC §2.3).

States: K tokens 0..K-1 plus the absorbing [MASK] state K. Per step t = 1..T the chain keeps a
token with alpha_t, replaces it by any token with beta_t = (1 - alpha_t - gamma_t) / K each, and
masks it with gamma_t; [MASK] stays [MASK]. A schedule is stored by its cumulative values
abar_t = prod alpha and gbar_t = 1 - prod (1 - gamma), with index 0 the identity (abar_0 = 1,
gbar_0 = 0), so per-step values are derived rather than stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DiceError, is_int

LOG_FLOOR = -70.0  # finite log-probability floor (as diffusers' VQ-Diffusion scheduler) instead of -inf


@dataclass(frozen=True)
class MultinomialSchedule:
    """Cumulative mask-and-replace schedule: `alpha_bar`, `gamma_bar` of shape [T + 1] (float64)."""

    alpha_bar: torch.Tensor  # [T+1], alpha_bar[0] = 1
    gamma_bar: torch.Tensor  # [T+1], gamma_bar[0] = 0

    def __post_init__(self) -> None:
        a, g = self.alpha_bar, self.gamma_bar
        if a.dim() != 1 or a.shape != g.shape or a.numel() < 2:
            raise DiceError(f"schedule arrays must be 1-d of equal length T+1 >= 2, got {tuple(a.shape)}, {tuple(g.shape)}")
        if abs(float(a[0]) - 1) > 1e-12 or abs(float(g[0])) > 1e-12:
            raise DiceError("schedule index 0 must be the identity (alpha_bar[0] = 1, gamma_bar[0] = 0)")
        if bool(((a + g) > 1 + 1e-9).any()) or bool((a < 0).any()) or bool((g < 0).any()):
            raise DiceError("schedule needs 0 <= alpha_bar, gamma_bar and alpha_bar + gamma_bar <= 1")

    @property
    def num_steps(self) -> int:
        """Return T."""
        return self.alpha_bar.numel() - 1

    @classmethod
    def vq_linear(cls, num_steps: int = 100, alpha_start: float = 0.99999, alpha_end: float = 0.000009,
                  gamma_start: float = 0.000009, gamma_end: float = 0.99999) -> "MultinomialSchedule":
        """Return VQ-Diffusion's schedule: abar and gbar linear over t = 1..T (diffusers' defaults)."""
        if num_steps < 1:
            raise DiceError(f"steps must be >= 1, got {num_steps}")
        t = torch.linspace(0, 1, num_steps, dtype=torch.float64) if num_steps > 1 else torch.zeros(1, dtype=torch.float64)
        abar = alpha_start + t * (alpha_end - alpha_start)
        gbar = gamma_start + t * (gamma_end - gamma_start)
        one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        return cls(torch.cat([one, abar]), torch.cat([zero, gbar]))

    def step(self, t: int) -> tuple[float, float, float]:
        """Return the one-step (alpha_t, gamma_t, beta_t * K) for t in 1..T."""
        return self.transition(t - 1, t)

    def transition(self, s: int, t: int) -> tuple[float, float, float]:
        """Return (keep, mask, replace * K) of q(x_t | x_s) for 0 <= s < t <= T: the steps s+1..t composed.

        Mask-and-replace matrices compose into one: keeping multiplies (abar_t / abar_s), so does
        escaping the mask ((1 - gbar_t) / (1 - gbar_s)), and the uniform replacement takes the rest.
        """
        big_t = self.num_steps
        if not (is_int(s) and is_int(t) and 0 <= s < t <= big_t):
            raise DiceError(f"a transition needs integer timesteps 0 <= s < t <= T={big_t}, got s={s!r}, t={t!r}")
        a, g = self.alpha_bar.tolist(), self.gamma_bar.tolist()
        alpha = a[t] / a[s] if a[s] > 0 else 0.0
        gamma = 1 - (1 - g[t]) / (1 - g[s]) if g[s] < 1 else 1.0
        return alpha, gamma, max(1 - alpha - gamma, 0.0)

    def cumulative(self, t: int) -> tuple[float, float, float]:
        """Return (abar_t, gbar_t, bbar_t * K) for t in 0..T."""
        a, g = float(self.alpha_bar[t]), float(self.gamma_bar[t])
        return a, g, max(1 - a - g, 0.0)


def _log(p: float) -> float:
    return float(torch.tensor(p, dtype=torch.float64).log())


def log_q_xt_given_x0(x0: torch.Tensor, t: int, schedule: MultinomialSchedule, num_classes: int) -> torch.Tensor:
    """Return log q(x_t | x_0) over the K+1 states: [B, D] -> [B, D, K+1] float64 (-inf for impossible)."""
    a, g, b_total = schedule.cumulative(t)
    k = num_classes
    out = torch.full((*x0.shape, k + 1), _log(b_total / k), dtype=torch.float64, device=x0.device)
    out[..., k] = _log(g)
    out.scatter_(-1, x0.clamp(max=k - 1).unsqueeze(-1), _log(a + b_total / k))
    absorbed = x0 == k  # a masked x0 stays masked
    if bool(absorbed.any()):
        out[absorbed] = torch.where(torch.arange(k + 1, device=x0.device) == k, 0.0, float("-inf")).double()
    return out


def _matrix(keep: float, mask: float, replace_total: float, num_classes: int) -> torch.Tensor:
    """Return the [K+1, K+1] mask-and-replace matrix M[i, j] = q(i | j) for the given probabilities."""
    k = num_classes
    q = torch.zeros(k + 1, k + 1, dtype=torch.float64)
    q[:k, :k] = replace_total / k
    q[:k, :k] += keep * torch.eye(k, dtype=torch.float64)
    q[k, :k] = mask
    q[k, k] = 1.0  # [MASK] is absorbing
    return q


def one_step_matrix(t: int, schedule: MultinomialSchedule, num_classes: int) -> torch.Tensor:
    """Return Q_t[i, j] = q(x_t = i | x_{t-1} = j) as a [K+1, K+1] float64 matrix (columns sum to 1)."""
    return transition_matrix(t - 1, t, schedule, num_classes)


def transition_matrix(s: int, t: int, schedule: MultinomialSchedule, num_classes: int) -> torch.Tensor:
    """Return Q_{s->t}[i, j] = q(x_t = i | x_s = j) for s < t as a [K+1, K+1] float64 matrix (= Q_t ... Q_{s+1})."""
    return _matrix(*schedule.transition(s, t), num_classes)


def cumulative_matrix(t: int, schedule: MultinomialSchedule, num_classes: int) -> torch.Tensor:
    """Return Qbar_t[i, j] = q(x_t = i | x_0 = j) as a [K+1, K+1] float64 matrix from the closed form."""
    a, g, b_total = schedule.cumulative(t)
    return _matrix(a, g, b_total, num_classes)


def log_model_posterior(log_p_x0: torch.Tensor, xt: torch.Tensor, t: int, schedule: MultinomialSchedule,
                        s: int | None = None) -> torch.Tensor:
    """Return log p(x_s | x_t) = log sum_{x0} q(x_s | x_t, x0) p(x0 | x_t): [B, D, K+1] float32 (s = t-1 by default).

    `log_p_x0` [B, D, K] are normalised log-probs of x0 over the K tokens; `xt` [B, D] in 0..K; any
    0 <= s < t skips the steps between (fewer sampling steps). Computed in O(K) per position via
    q(x_s | x_t, x0) = Q_{s->t}(x_t | x_s) Qbar_s(x_s | x0) / Qbar_t(x_t | x0), in float64 with -inf
    allowed, floored at LOG_FLOOR at the end. x0 values that cannot produce x_t (zero likelihood) drop
    out, which renormalises p(x0) over the consistent ones. A one-hot p(x0) gives q(x_s | x_t, x0).
    """
    k = log_p_x0.shape[-1]
    lp = log_p_x0.double()
    s = t - 1 if s is None else s
    alpha, gamma, b_step = schedule.transition(s, t)  # checks 0 <= s < t <= T
    a_prev, g_prev, b_prev = schedule.cumulative(s)
    a_t, g_t, b_t = schedule.cumulative(t)
    is_mask = (xt == k).unsqueeze(-1)  # [B, D, 1]
    s = xt.clamp(max=k - 1).unsqueeze(-1)

    # log Qbar_t(x_t | x0 = j) for every j: [B, D, K]
    log_lik = torch.full_like(lp, _log(b_t / k))
    log_lik.scatter_(-1, s, _log(a_t + b_t / k))
    log_lik = torch.where(is_mask, _log(g_t), log_lik)
    log_w = lp - log_lik
    log_w = torch.where(torch.isinf(log_lik), float("-inf"), log_w)  # inconsistent x0 drop out
    log_sum_w = torch.logsumexp(log_w, dim=-1, keepdim=True)  # [B, D, 1]

    # sum_j Qbar_{t-1}(i | j) w_j: tokens i: abar w_i + bbar/K sum w; mask: gbar sum w
    tok = torch.logaddexp(_log(a_prev) + log_w, _log(b_prev / k) + log_sum_w)
    mask = _log(g_prev) + log_sum_w
    inner = torch.cat([tok, mask], dim=-1)  # [B, D, K+1]

    # times Q_{s->t}(x_t | x_s = i)
    step_tok = torch.full((*xt.shape, k + 1), _log(b_step / k), dtype=torch.float64, device=xt.device)
    step_tok[..., k] = float("-inf")  # [MASK] never turns into a token
    step_tok.scatter_(-1, s, _log(alpha + b_step / k))
    step_mask = torch.full_like(step_tok, _log(gamma))
    step_mask[..., k] = 0.0
    log_step = torch.where(is_mask, step_mask, step_tok)

    out = log_step + inner
    out = out - torch.logsumexp(out, dim=-1, keepdim=True)
    return out.nan_to_num(nan=LOG_FLOOR, neginf=LOG_FLOOR).clamp(min=LOG_FLOOR).float()
