"""The `shapes` denoiser: protocol, both DICE methods, checkpoints, training corruption, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dicelib
from dicelib.image import shapes_model as smod
from dicelib.image import shapesbench as sb
from dicelib.errors import DiceError
from dicelib.core.regeneration import regenerate
from dicelib.image.train_shapes import TrainConfig, corrupt, denoising_loss, prompt_following, scene_batch, train

TINY = smod.ShapesConfig(dim=32, depth=1, heads=2, pixel_dim=8, num_steps=6)


@pytest.fixture(scope="module")
def tiny() -> smod.ShapesDenoiser:
    torch.manual_seed(0)
    return smod.ShapesDenoiser(TINY).eval()


def _batch(n: int = 3, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    rng = np.random.default_rng(seed)
    scenes = [sb.random_scene(rng) for _ in range(n)]
    x0 = torch.from_numpy(np.stack([sb.render(s).ravel() for s in scenes]).astype(np.int64))
    return x0, [sb.prompt(s) for s in scenes]


def test_follows_the_denoiser_protocol(tiny):
    assert isinstance(tiny, dicelib.DiscreteDenoiser)
    assert tiny.num_classes == 8 and tiny.mask_id == 8 and tiny.num_positions == 256
    assert tiny.null_cond.shape == (1, TINY.prompt_len)
    x0, prompts = _batch(3)
    x = x0.clone()
    x[:, :10] = tiny.mask_id  # [MASK] inputs are accepted
    t = torch.tensor([0.0, 0.5, 1.0])
    out = tiny.logits(x, t, smod.encode(prompts))
    assert out.shape == (3, 256, 8) and torch.isfinite(out).all()
    torch.testing.assert_close(tiny.logits(x, t, prompts), out)  # prompt strings work too
    assert tiny.logits(x, t, None).shape == (3, 256, 8)  # None = the null prompt
    assert not torch.allclose(tiny.logits(x, t, None), out)  # and the prompt matters
    with pytest.raises(DiceError, match=r"shape \[B, 256\]"):
        tiny.logits(x[:, :100], t, prompts)


def test_encode_and_its_errors():
    ids = smod.encode(["a small red circle on a green background", ""])
    assert ids.shape == (2, 14) and ids[1, 0] == smod.WORD_ID["<null>"] and (ids[1, 1:] == 0).all()
    with pytest.raises(DiceError, match="unknown word"):
        smod.encode(["a small red dragon on a green background"])
    with pytest.raises(DiceError, match="at most"):
        smod.encode(["a " * 20])


@pytest.mark.parametrize("method,opts", [("masked", {"noise": "mask", "steps": 4}), ("masked", {"noise": "uniform", "steps": 4}),
                                         ("multinomial", {})])
@pytest.mark.parametrize("pinv", ["onehot", "lai"])
def test_exact_reconstruction_with_both_methods(tiny, method, opts, pinv):
    x0, prompts = _batch(2, seed=1)
    cond = smod.encode(prompts)
    inv = dicelib.invert(tiny, x0, cond, method=method, pseudo_inverse=pinv, cfg_scale=2.0,
                         generator=torch.Generator().manual_seed(0), **opts)
    assert torch.equal(dicelib.reconstruct(tiny, inv), x0)


def test_transition_schedule_corrupts_t_over_T():
    sched = smod.shapes_schedule(8, 0.25)
    assert sched.num_steps == 8
    level = 1 - sched.alpha_bar
    torch.testing.assert_close(level[:-1], torch.arange(8, dtype=torch.float64) / 8)
    torch.testing.assert_close(sched.gamma_bar, 0.75 * level)


def test_checkpoint_round_trip(tiny, tmp_path):
    path = smod.save(tiny, tmp_path / "m.pt", meta={"note": "tiny"})
    loaded = smod.load(path)
    payload = torch.load(path, weights_only=True)  # plain tensors and Python values only
    assert payload["meta"] == {"note": "tiny"} and loaded.config == TINY
    x0, prompts = _batch(2)
    t = torch.full((2,), 0.3)
    # weights are stored in float16: the reloaded model agrees to float16 precision, not bit for bit
    torch.testing.assert_close(loaded.logits(x0, t, prompts), tiny.logits(x0, t, prompts), atol=3e-2, rtol=3e-2)
    with pytest.raises(DiceError, match="no shapes checkpoint"):
        smod.load(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(DiceError, match="not a dicelib shapes checkpoint"):
        smod.load(tmp_path / "bad.pt")


def test_corruption_kinds_and_levels():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.zeros(600, 256, dtype=torch.long)
    x, t = corrupt(x0, 8, gen, kind_probs=(0.0, 1.0, 0.0))  # [MASK] only
    assert set(x.unique().tolist()) <= {0, 8}
    assert abs(float((x == 8).float().mean(1).sub(t).abs().mean())) < 0.05  # t of the pixels corrupted
    x, t = corrupt(x0, 8, gen, kind_probs=(1.0, 0.0, 0.0))  # renoise only: no [MASK]
    assert not (x == 8).any() and (x != 0).any()
    x, t = corrupt(x0, 8, gen, kind_probs=(0.0, 0.0, 1.0), replace_share=0.5)
    assert (x == 8).any() and ((x != 0) & (x != 8)).any()
    assert sorted((t * 600).floor().long().tolist()) == list(range(600))  # stratified levels


def test_training_excludes_heldout_prompts_and_runs():
    rng = np.random.default_rng(0)
    _, prompts = scene_batch(rng, 50, set())
    held = set(prompts[:25])
    _, fresh = scene_batch(np.random.default_rng(0), 50, held)
    assert not held & set(fresh)
    model, log, seconds = train(TrainConfig(steps=3, batch_size=4, warmup=1), TINY, held, progress=False)
    assert list(log["step"]) == [0, 1, 2] and np.isfinite(log["loss"]).all() and not model.training


def test_regenerate_sampling_and_inpainting(tiny):
    x0, prompts = _batch(2)
    cond = smod.encode(prompts)
    a = regenerate(tiny, cond, steps=3, cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
    b = regenerate(tiny, cond, steps=3, cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (2, 256) and int(a.max()) < 8  # no [MASK] left
    keep = torch.zeros(2, 256, dtype=torch.bool)
    keep[:, 128:] = True
    out = regenerate(tiny, cond, steps=3, source=x0, keep=keep, noise="uniform", order="confidence")
    assert torch.equal(out[:, 128:], x0[:, 128:])
    samples, q = prompt_following(tiny, prompts, steps=2, cfg_scale=1.0)
    assert samples.shape == (2, 16, 16) and 0.0 <= q["prompt_match"] <= 1.0
    with pytest.raises(DiceError, match="both"):
        regenerate(tiny, cond, source=x0)


def test_oracle_targets_follow_each_rows_corruption():
    from dicelib.image.shapes_oracle import ShapesOracle
    from dicelib.image.train_shapes import oracle_targets

    oracle = ShapesOracle()
    x0, prompts = _batch(4, seed=3)
    gen = torch.Generator().manual_seed(1)
    xt, t, kind = corrupt(x0, 8, gen, kind_probs=(1.0, 1.0, 1.0), return_kind=True)
    dropped = torch.tensor([False, False, False, True])
    target = oracle_targets(oracle, xt, t, kind, prompts, dropped, x0)
    assert target.shape == (4, 256, 8)
    for i in range(3):
        want = oracle.marginals(xt[i:i + 1], t[i:i + 1], prompts[i:i + 1], kinds=(("uniform", "mask", "mask_replace")[kind[i]],))
        torch.testing.assert_close(target[i], want[0].float())
    assert torch.equal(target[3].argmax(-1), x0[3]) and float(target[3].max(-1).values.min()) == 1.0  # dropped: one-hot x0
    logits = torch.randn(4, 256, 8)
    onehot = torch.nn.functional.one_hot(x0, 8).float()
    corrupted = xt != x0
    torch.testing.assert_close(denoising_loss(logits, x0, corrupted, 0.3, onehot), denoising_loss(logits, x0, corrupted, 0.3))


def test_kl_to_the_oracle_is_zero_for_the_oracle_and_positive_for_an_untrained_model(tiny):
    from dicelib.image import benchmark_build as sbd
    from dicelib.image.shapes_oracle import ShapesOracle
    from dicelib.image.train_shapes import heldout_scenes, oracle_kl

    cases, grids = sbd.build_cases(cases_per_type=4, val_per_type=1, test_per_type=1)
    x0, prompts = heldout_scenes(cases, grids, 6, seed=0)
    held = sbd.heldout_prompts(cases)
    assert len(x0) == 6 and set(prompts) <= held
    assert all(sb.matches_prompt(x.numpy(), p, sizes=True) for x, p in zip(x0, prompts))
    oracle = ShapesOracle()
    own = oracle_kl(oracle, oracle, x0, prompts)
    assert list(own) == ["kl_mask10", "kl_mask50", "kl_mask90"] and max(own.values()) < 1e-4
    assert min(oracle_kl(tiny, oracle, x0, prompts).values()) > 0.1


def test_training_stage_writes_a_small_flat_report_and_a_quality_curve(tmp_path):
    import json

    import pandas as pd

    from dicelib.image import benchmark_build as sbd
    from dicelib.image.train_shapes import main

    cases, grids = sbd.build_cases(cases_per_type=4, val_per_type=1, test_per_type=1)
    sbd.save(cases, grids, tmp_path / "bench", previews=0)
    out = {k: tmp_path / v for k, v in dict(out="m.pt", metrics="m.json", plot="loss.csv", quality_plot="q.csv",
                                            figure="s.png", table="t.csv").items()}
    args = ["--steps", "4", "--batch-size", "4", "--warmup", "1", "--eval-every", "2", "--dim", "32", "--depth", "1",
            "--heads", "2", "--pixel-dim", "8", "--eval-prompts", "3", "--eval-scenes", "3", "--curve-prompts", "2",
            "--eval-steps", "3", "--data", str(tmp_path / "bench"), "--device", "cpu"]
    report = main(args + [x for k, v in out.items() for x in (f"--{k.replace('_', '-')}", str(v))])
    assert set(report) == {"prompt_match", "prompt_match_tolerant", "kl_mask10", "kl_mask50", "kl_mask90", "final_loss",
                           "steps", "eval_prompts", "eval_scenes", "parameters"}
    assert json.loads(out["metrics"].read_text()) == {"exact_parse": report["prompt_match"],
                                                      "tolerant": report["prompt_match_tolerant"], "kl": report["kl_mask50"]}
    assert all(not isinstance(v, dict) for v in report.values())
    table = pd.read_csv(out["table"], dtype=str)
    assert list(table["metric"]) == list(report) and list(table["value"]) == [str(v) for v in report.values()]
    assert out["table"].with_suffix(".md").is_file()
    curve = pd.read_csv(out["quality_plot"])
    assert list(curve["step"]) == [2, 4] and "kl_mask50" in curve and (curve["kl_mask50"] > 0).all()
    assert smod.load(out["out"]).config.dim == 32
