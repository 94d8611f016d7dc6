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
from tqdm.auto import tqdm

from ..core.api import edit_grid, invert
from ..core.settings import INVERT
from ..errors import DiceError, Relation, integer, list_of, number, string
from ..io import LAMBDA, stage_params
from .sentiment_data import SentimentPair

MASKED_GENERATION = {"lambda1": 0.0, "lambda2": 1.0}
RECONSTRUCTION = {"lambda1": 1.0, "lambda2": 0.0}


def load_masked_lm(name: str = "text", device: str | torch.device = "cpu") -> Any:
    """Return a MaskedLM: the pipeline's `text` model, or any HF masked LM id / folder (offline)."""
    if name == "text":
        from .model import load_text_model

        return load_text_model(device=device)
    from ..adapters.masked_lm import MaskedLM

    return MaskedLM.from_pretrained(name, device=device)


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
                    store: str = INVERT.store, progress: bool = True) -> dict[str, list[str]]:
    """Return {run name: edited sentences, "source": the decoded inputs}: invert under sources, edit under targets.

    runs: name -> keyword arguments of dicelib.edit (lambda1, lambda2, injection, ...), all edited from one
    inversion per length group as one `edit_grid`. A run with targets == sources and RECONSTRUCTION is
    the reconstruction. "source" is each content as the
    tokenizer reads it back (the reference of "identical sentence").
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
        edits = edit_grid(lm, inv, list(runs.values()), conds=[target] * len(runs), generators=list(gens.values()))
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


def edit_settings(set1: list[float], set2: list[float], sweep: list[float]) -> dict[str, tuple[float, float | None]]:
    """Return notebook 05's edit runs: the paper's (lambda1, lambda2) sets, masked generation and the lambda1 sweep."""
    return {"set1": tuple(set1), "set2": tuple(set2),
            "masked_generation": (MASKED_GENERATION["lambda1"], MASKED_GENERATION["lambda2"]), **sweep_settings(sweep)}


PARAMS = stage_params(  # notebook 05
    "text_editing", "seed steps tau pseudo_inverse margin temperature",
    Relation(("examples", "set1", "set2", "sweep"),
             "examples among set1, set2, masked_generation and sweep_<v> for each v in sweep",
             lambda examples, set1, set2, sweep: set(examples) <= set(edit_settings(set1, set2, sweep))),
    model=string(), n_pairs=integer(0), judge_pairs=integer(0), set1=list_of(LAMBDA, 2), set2=list_of(LAMBDA, 2),
    sweep=list_of(LAMBDA), examples=list_of(string()), structure_threshold=number(0, 1), n_examples=integer(1),
    threads=integer(1))
