"""Mutual information between edit-friendly latents and the input (DICE Remark 3.1, Fig. 3; SPEC §2.7).

Three views of I(z_t; x_0):
- `gaussian_mi`: the closed form for a Gaussian DDPM with x_0 ~ N(0, I) and latents
  z_t = x'_{t-1} - sqrt(alpha_t) x_t from independent q-samples (per dimension, nats);
- `gaussian_mi_monte_carlo`: the same by sampling scalar Gaussians, -1/2 log(1 - rho^2);
- `discrete_mi`: mask-and-replace diffusion over K classes with an oracle denoiser (exact
  posterior under a uniform prior), by enumerating (x_0, x'_{t-1}, x_t) exactly.
"""

from __future__ import annotations

import math

import torch

from .transitions import MultinomialSchedule, cumulative_matrix, log_model_posterior


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Return the DDPM linear beta schedule [T] (float64)."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def gaussian_mi(betas: torch.Tensor) -> torch.Tensor:
    """Return I(z_t; x_0) in nats for t = 1..T: [T] float64 (abar_0 = 1)."""
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    noise = 1 - abar_prev + alphas * (1 - abar)
    signal = betas**2 * abar_prev
    return 0.5 * torch.log1p(signal / noise)


def gaussian_mi_at_levels(levels: torch.Tensor, num_steps: int = 1000) -> torch.Tensor:
    """Return the paper's Gaussian MI curve read at noise levels in (0, 1] (t = round(level * T))."""
    mi = gaussian_mi(linear_betas(num_steps))
    idx = (levels.double() * num_steps).round().long().clamp(1, num_steps) - 1
    return mi[idx]


def gaussian_mi_monte_carlo(betas: torch.Tensor, t: int, num_samples: int, generator: torch.Generator) -> tuple[float, float]:
    """Return (estimate, standard error) of I(z_t; x_0) at t (1-based) from `num_samples` scalar draws.

    The estimate is -1/2 log(1 - r^2) - 1/(2n), with r the sample correlation of z_t and x_0 and
    1/(2n) the bias of r^2 near independence. Its standard error uses n r^2 ~ noncentral
    chi-square(1, n rho^2), Var(r^2) = (2 + 4 n rho^2) / n^2, with rho^2 read as r^2 (which
    includes the 1/n noise floor, so the error is not understated where rho is near 0).
    """
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    a_t, ab_t = alphas[t - 1], abar[t - 1]
    ab_prev = abar[t - 2] if t > 1 else torch.tensor(1.0, dtype=torch.float64)
    x0, e1, e2 = torch.randn(3, num_samples, generator=generator, dtype=torch.float64)
    xt = ab_t.sqrt() * x0 + (1 - ab_t).sqrt() * e1
    x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * e2  # independent q-sample
    z = x_prev - a_t.sqrt() * xt
    r2 = torch.corrcoef(torch.stack([z, x0]))[0, 1].item() ** 2
    n = num_samples
    estimate = -0.5 * math.log1p(-r2) - 1 / (2 * n)
    stderr = math.sqrt(2 + 4 * n * r2) / n / (2 * (1 - r2))
    return estimate, stderr


def discrete_mi(num_classes: int, schedule: MultinomialSchedule) -> torch.Tensor:
    """Return exact I(z_t; x_0) in nats for t = 1..T of mask-and-replace diffusion: [T] float64.

    x_0 is uniform over K tokens; x'_{t-1} and x_t are independent q-samples given x_0; the latent
    z_t = log onehot(x'_{t-1}) - log p(x_{t-1} | x_t) uses the oracle posterior. Distinct (x', x_t)
    pairs giving the same z are merged before the entropy is taken.
    """
    k = num_classes
    states = torch.arange(k + 1)
    out = []
    for t in range(1, schedule.num_steps + 1):
        q_t = cumulative_matrix(t, schedule, k)[:, :k]  # [K+1 states, K x0]
        q_prev = cumulative_matrix(t - 1, schedule, k)[:, :k]
        # oracle p(x0 | x_t = s) by Bayes with the uniform prior: [K+1, K]
        post_x0 = q_t / q_t.sum(1, keepdim=True).clamp(min=1e-300)
        log_post_x0 = post_x0.clamp(min=1e-300).log().unsqueeze(0)  # [1, K+1, K]
        yhat = log_model_posterior(log_post_x0, states.unsqueeze(0), t, schedule).double()[0]  # [K+1 s, K+1]
        # z(a, s) = log onehot(a) - yhat(s): group identical latents
        onehot = torch.full((k + 1, k + 1), -70.0, dtype=torch.float64).fill_diagonal_(0.0)
        z = (onehot.unsqueeze(1) - yhat.unsqueeze(0)).reshape(-1, k + 1)  # [(a, s), K+1]
        _, group = torch.unique(torch.round(z * 1e6), dim=0, return_inverse=True)
        joint_pair = q_prev.unsqueeze(1) * q_t.unsqueeze(0) / k  # [a, s, x0]
        joint = torch.zeros(int(group.max()) + 1, k, dtype=torch.float64).index_add_(0, group, joint_pair.reshape(-1, k))
        pz = joint.sum(1, keepdim=True)
        px0 = joint.sum(0, keepdim=True)
        mask = joint > 0
        out.append((joint[mask] * (joint[mask].log() - (pz * px0).expand_as(joint)[mask].log())).sum())
    return torch.stack(out).clamp(min=0.0)
