"""Return DICE reconstructions and sentiment edits of Sentiment Editing pairs with any masked LM.

Paper §4.2: invert the negative content sentence under the negative context (masked method,
noise "mask"), then regenerate it under the positive context. dicelib inverts a [B, D] batch,
so pairs are grouped by the token length of their content and each group is one batch; outputs
come back in the order of the input pairs. Every run (reconstruction, an edit setting, the masked
generation baseline) draws from its own generator seeded by (seed, run name), so adding a run
never changes another run's output.

Masked generation (the paper's baseline) is the same sampler without latents: the inversion's
masks and noise, then `lambda1 = 0, lambda2 = 1`, i.e. Gumbel-max sampling from the model.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from tqdm import tqdm

from ..adapters.masked_lm import COMPUTE_DTYPES
from ..core.api import edit_grid, invert
from ..core.settings import INVERT
from ..errors import DiceError, Relation, choice, integer, list_of, string
from ..io import LAMBDA, stage_params
from .sentiment_data import SentimentPair

MASKED_GENERATION = {"lambda1": 0.0, "lambda2": 1.0}
RECONSTRUCTION = {"lambda1": 1.0, "lambda2": 0.0}
EDIT_PSEUDO_INVERSES = ("onehot", "lai")  # exact reconstruction; 'model' is not exact where it disagrees with x0


def load_masked_lm(name: str = "text", device: str | torch.device = "cpu", compute_dtype: str = "float32") -> Any:
    """Return a MaskedLM: the pipeline's `text` model, a folder it saved, or any HF masked LM id / folder (offline).
    compute_dtype: "float32", or "bfloat16" (the forward pass on a bfloat16 copy; reconstruction stays exact)."""
    from .model import FOLDER, is_text_folder, load_text_model

    if name == "text" or is_text_folder(name):
        return load_text_model(FOLDER if name == "text" else name, device=device, compute_dtype=compute_dtype)
    from ..adapters.masked_lm import MaskedLM

    return MaskedLM.from_pretrained(name, device=device, compute_dtype=compute_dtype)


def as_model_writes(lm: Any, sentences: list[str]) -> list[str]:
    """Return each sentence as the model's tokenizer reads it back (uncased models lower-case it): edit references."""
    return lm.decode_text(sentences) if hasattr(lm, "decode_text") else [
        lm.tokenizer.decode(lm.tokenizer(s, add_special_tokens=False)["input_ids"]).strip() for s in sentences]


def group_by_length(lm: Any, contents: list[str]) -> dict[int, list[int]]:
    """Return {content token length D: row indices}, lengths ascending."""
    groups: dict[int, list[int]] = {}
    for i, sentence in enumerate(contents):
        d = len(lm.tokenizer(sentence, add_special_tokens=False)["input_ids"])
        groups.setdefault(d, []).append(i)
    return dict(sorted(groups.items()))


def run_seed(seed: int, name: str) -> int:
    """Return the generator seed of one named run (stable across Python processes)."""
    return int(seed) * 1_000_003 + zlib.crc32(name.encode())


def invert_and_edit(lm: Any, sources: list[str], contents: list[str], targets: list[str],
                    runs: dict[str, dict[str, float]], *, tau: float, steps: int | None = INVERT.steps,
                    pseudo_inverse: str = INVERT.pseudo_inverse, noise: str = "mask",
                    mask_schedule: str = INVERT.mask_schedule, margin: float = INVERT.margin,
                    cfg_scale: float | None = INVERT.cfg_scale, temperature: float = INVERT.temperature, seed: int = 0,
                    store: str = "none", max_batch: int | None = 256, progress: bool = True) -> dict[str, list[str]]:
    """Return {run name: edited sentences, "source": the decoded inputs}: invert under sources, edit under targets.

    runs: name -> keyword arguments of dicelib.edit (lambda1, lambda2, injection, ...), all edited from one
    inversion per length group as one `edit_grid`. A run with targets == sources and RECONSTRUCTION is
    the reconstruction. "source" is each content as the
    tokenizer reads it back (the reference of "identical sentence"). store "none" (the default here)
    keeps no [steps, B, D, K] latents (a 30k vocabulary makes them gigabytes); max_batch caps the
    rows of one model call.
    """
    if not (len(sources) == len(contents) == len(targets)):
        raise DiceError(f"got {len(sources)} source contexts, {len(contents)} contents and {len(targets)} targets")
    if not runs:
        raise DiceError("no runs given; pass e.g. {'dice': {'lambda1': 0.2, 'lambda2': 0.8}}")
    inv_gen = torch.Generator().manual_seed(run_seed(seed, f"invert/{pseudo_inverse}"))
    gens = {name: torch.Generator().manual_seed(run_seed(seed, name)) for name in runs}
    out: dict[str, list[str]] = {name: [""] * len(contents) for name in ("source", *runs)}
    groups = group_by_length(lm, contents)
    for d, rows in tqdm(groups.items(), desc=f"{pseudo_inverse} tau={tau}", disable=not progress, leave=False):
        x0, cond = lm.encode_pair([sources[i] for i in rows], [contents[i] for i in rows])
        inv = invert(lm, x0, cond, method="masked", steps=steps, tau=tau, pseudo_inverse=pseudo_inverse,
                     cfg_scale=cfg_scale, temperature=temperature, store=store, generator=inv_gen, noise=noise,
                     mask_schedule=mask_schedule, margin=margin)
        target = [targets[i] for i in rows]
        for i, sentence in zip(rows, lm.decode(x0)):
            out["source"][i] = sentence
        edits = edit_grid(lm, inv, list(runs.values()), conds=[target] * len(runs), generators=list(gens.values()),
                          max_batch=max_batch)
        for name, x in zip(runs, edits):  # all runs as one grid: one model call per step
            for i, sentence in zip(rows, lm.decode(x)):
                out[name][i] = sentence
    return out


def reconstruct_pairs(lm: Any, pairs: list[SentimentPair], pseudo_inverses: tuple[str, ...] = ("onehot", "lai"),
                      **kwargs: Any) -> dict[str, list[str]]:
    """Return {"dice_<pi>": reconstructions, "masked_generation": samples} of the negative contents (tau 1)."""
    sources = [p.neg_context for p in pairs]
    contents = [p.neg_content for p in pairs]
    out: dict[str, list[str]] = {}
    for i, pi in enumerate(pseudo_inverses):
        runs = {f"dice_{pi}": RECONSTRUCTION}
        if i == 0:  # lambda1 = 0 ignores the latents: one baseline suffices
            runs["masked_generation"] = MASKED_GENERATION
        out.update(invert_and_edit(lm, sources, contents, sources, runs, tau=1.0, pseudo_inverse=pi, **kwargs))
    return out


def edit_pairs(lm: Any, pairs: list[SentimentPair], settings: dict[str, tuple[float, float | None]], *,
               tau: float, **kwargs: Any) -> dict[str, list[str]]:
    """Return {setting name: positive edits} of the negative contents; settings: name -> (lambda1, lambda2 or None)."""
    runs = {name: {"lambda1": float(l1), "lambda2": l2} for name, (l1, l2) in settings.items()}
    return invert_and_edit(lm, [p.neg_context for p in pairs], [p.neg_content for p in pairs],
                           [p.pos_context for p in pairs], runs, tau=tau, **kwargs)


def sweep_settings(lambda1s: list[float]) -> dict[str, tuple[float, None]]:
    """Return {"sweep_<l1>": (lambda1, None)}: lambda2 = 1 - lambda1, the paper's ablation convention."""
    return {f"sweep_{float(l1):g}": (float(l1), None) for l1 in lambda1s}


def sweep_pairs(lm: Any, pairs: list[SentimentPair], pseudo_inverses: list[str], sweep: list[float], *,
                tau: float, **kwargs: Any) -> dict[str, dict[str, list[str]]]:
    """Return {pseudo-inverse: {"source", "sweep_<l1>": edits}}: one inversion per pseudo-inverse, the sweep as one grid."""
    return {pi: edit_pairs(lm, pairs, sweep_settings(sweep), tau=tau, pseudo_inverse=pi, **kwargs)
            for pi in pseudo_inverses}


def test_settings(set1: list[float], set2: list[float], chosen: dict[str, float],
                  pseudo_inverses: list[str]) -> dict[str, tuple[str, float, float | None]]:
    """Return the test runs {name: (pseudo-inverse, lambda1, lambda2)}: the paper's two sets and the val choice per
    pseudo-inverse, and masked generation (lambda1 = 0: no latents, so one run serves both)."""
    out: dict[str, tuple[str, float, float | None]] = {}
    for pi in pseudo_inverses:
        out[f"dice_{pi}_set1"] = (pi, float(set1[0]), float(set1[1]))
        out[f"dice_{pi}_set2"] = (pi, float(set2[0]), float(set2[1]))
        out[f"dice_{pi}_val"] = (pi, float(chosen[pi]), None)
    out["masked_generation"] = (pseudo_inverses[0], MASKED_GENERATION["lambda1"], MASKED_GENERATION["lambda2"])
    return out


def edit_test_pairs(lm: Any, pairs: list[SentimentPair], runs: dict[str, tuple[str, float, float | None]], *,
                    tau: float, **kwargs: Any) -> dict[str, list[str]]:
    """Return {"source", run name: edits} for `test_settings` runs: one inversion and one grid per pseudo-inverse."""
    out: dict[str, list[str]] = {}
    for pi in dict.fromkeys(v[0] for v in runs.values()):
        settings = {name: (l1, l2) for name, (p, l1, l2) in runs.items() if p == pi}
        out.update(edit_pairs(lm, pairs, settings, tau=tau, pseudo_inverse=pi, **kwargs))
    return out


PARAMS = stage_params(  # notebook 05
    "text_editing", "seed steps tau margin temperature",
    Relation(("examples", "pseudo_inverses"),
             "examples among dice_<pi>_set1 / _set2 / _val for each pi in pseudo_inverses, and masked_generation",
             lambda examples, pseudo_inverses: set(examples) <= set(test_settings(
                 [0, 1], [0, 1], {pi: 0.5 for pi in pseudo_inverses}, pseudo_inverses or ["lai"]))),
    model=string(), n_pairs=integer(0), val_pairs=integer(0), judge_pairs=integer(0),
    pseudo_inverses=list_of(choice(EDIT_PSEUDO_INVERSES)), set1=list_of(LAMBDA, 2), set2=list_of(LAMBDA, 2),
    sweep=list_of(LAMBDA), examples=list_of(string()), n_examples=integer(1),
    compute_dtype=choice(COMPUTE_DTYPES), threads=integer(1))
