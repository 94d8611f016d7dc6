"""VQ-Diffusion adapter: tiny random components, exact reconstruction, diffusers cross-checks, errors."""

from __future__ import annotations

import pytest
import torch

import dicelib
from dicelib.adapters import VQDiffusion
from dicelib.adapters.random_components import (
    random_vq_diffusion,
    vq_diffusion_components,
)
from dicelib.errors import DiceError, MissingWeightsError
from dicelib.core.transitions import MultinomialSchedule, log_model_posterior


@pytest.fixture(scope="module")
def model() -> VQDiffusion:
    return random_vq_diffusion("tiny", seed=0, device="cpu")


def test_shapes_and_ranges(model, images):
    x0 = model.encode_image(images)
    assert x0.shape == (2, model.num_positions) and x0.dtype == torch.long
    assert int(x0.min()) >= 0 and int(x0.max()) < model.num_classes
    assert model.mask_id == model.num_classes == 16
    cond = model.encode_prompt(["a cat", "a dog"])
    assert cond.shape[0] == 2 and torch.allclose(cond.norm(dim=-1), torch.ones(cond.shape[:2]), atol=1e-5)
    assert not torch.allclose(cond[0], cond[1])  # different prompts, different conditions
    assert model.null_cond.shape == (1, *cond.shape[1:])
    x = x0.clone()
    x[:, ::3] = model.mask_id  # multinomial inputs include [MASK]
    logp = model.logits(x, torch.full((2,), 0.5), cond)
    assert logp.shape == (2, model.num_positions, model.num_classes)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, model.num_positions), atol=1e-5)
    img = model.decode(x0)
    assert img.shape == (2, 3, model.image_size, model.image_size)
    assert float(img.min()) >= 0 and float(img.max()) <= 1


@pytest.mark.parametrize("pseudo_inverse,store", [("onehot", "float32"), ("lai", "none")])
def test_image_tokens_invert_edit_reconstructs_exactly(model, images, pseudo_inverse, store):
    x0 = model.encode_image(images)
    cond = model.encode_prompt(["a red cat", "a blue dog"])
    inv = dicelib.invert(model, x0, cond, method="multinomial", pseudo_inverse=pseudo_inverse, cfg_scale=5.0,
                         store=store, generator=torch.Generator().manual_seed(3))
    assert inv.steps == model.transition_schedule.num_steps  # the scheduler's own T
    x = dicelib.edit(model, inv, cond, lambda1=1.0, lambda2=0.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(x, x0)
    assert torch.equal(model.decode(x), model.decode(x0))


def test_timesteps_follow_round_t_times_T_minus_one(model):
    big_t = model.num_timesteps
    steps = torch.arange(1, big_t + 1)
    t = (steps.double() / big_t).float()  # dicelib passes float32 levels step / T
    assert torch.equal(model.timesteps(t, big_t), steps - 1)
    assert model.timesteps(torch.tensor(0.0), 1).tolist() == [0]  # clean input: least noisy timestep


def test_rows_with_different_t_are_grouped(model, images):
    x = model.encode_image(images).repeat(2, 1)  # [4, D]
    x[:, 1::2] = model.mask_id
    cond = model.encode_prompt(["a cat"] * 4)
    t = torch.tensor([0.1, 0.9, 0.1, 0.5])
    together = model.logits(x, t, cond)
    for row in range(4):
        alone = model.logits(x[row:row + 1], t[row:row + 1], cond[row:row + 1])
        assert torch.allclose(together[row], alone[0], atol=1e-5)
    assert not torch.allclose(together[0], together[1])  # the timestep matters


def test_schedule_is_the_schedulers(model):
    sched = model.scheduler
    s = model.transition_schedule
    assert isinstance(s, MultinomialSchedule) and s.num_steps == sched.config.num_train_timesteps
    # diffusers: step t at index t - 1 (float32 logs); identity first here
    assert torch.allclose(s.alpha_bar[1:].float(), sched.log_cumprod_at[:-1].exp(), rtol=1e-5)
    assert torch.allclose(s.gamma_bar[1:].float(), sched.log_cumprod_ct[:-1].exp(), rtol=1e-5, atol=1e-7)
    ref = MultinomialSchedule.vq_linear(s.num_steps)
    assert torch.allclose(s.alpha_bar, ref.alpha_bar) and torch.allclose(s.gamma_bar, ref.gamma_bar)


def test_schedule_from_a_replacing_scheduler_gives_its_posterior():
    """The core test covers diffusers' default (almost absorbing) schedule; here uniform replacement
    carries real mass, read through the adapter's schedule conversion."""
    from diffusers import VQDiffusionScheduler

    from dicelib.adapters.vq_diffusion import schedule_from_scheduler

    k, big_t = 6, 20
    sched = VQDiffusionScheduler(num_vec_classes=k + 1, num_train_timesteps=big_t, alpha_cum_end=0.3, gamma_cum_end=0.5)
    schedule = schedule_from_scheduler(sched)
    gen = torch.Generator().manual_seed(0)
    log_p_x0 = torch.log_softmax(3 * torch.randn(2, 9, k, generator=gen), dim=-1)  # [B, D, K]
    xt = torch.randint(k + 1, (2, 9), generator=gen)  # includes [MASK] = K
    for t in range(1, big_t + 1):  # diffusers' index t - 1
        ours = log_model_posterior(log_p_x0, xt, t, schedule).double().exp()  # [B, D, K+1]
        theirs = sched.q_posterior(log_p_x0.transpose(1, 2), xt, torch.tensor(t - 1))  # [B, K+1, D]
        theirs = torch.softmax(theirs.double().transpose(1, 2), dim=-1)
        assert torch.allclose(ours, theirs, atol=2e-4), f"t={t}"


def test_error_paths(model, images, tmp_path):
    x0 = model.encode_image(images)
    cond = model.encode_prompt(["a cat", "a dog"])
    with pytest.raises(DiceError, match="MASK"):
        model.decode(torch.full_like(x0, model.mask_id))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(DiceError, match="cannot read image"):
        model.encode_image(bad)


def test_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError, match="microsoft/vq-diffusion-ithq") as err:
        VQDiffusion.from_pretrained("microsoft/vq-diffusion-ithq")
    assert "huggingface-cli download microsoft/vq-diffusion-ithq" in str(err.value)
    (tmp_path / "partial").mkdir()
    with pytest.raises(MissingWeightsError, match="vqvae"):
        VQDiffusion.from_pretrained(tmp_path / "partial")
