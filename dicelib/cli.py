"""Return the `dicelib` command line (typer app): invert an image, edit it under a new prompt, list models.

    dicelib edit --model amused/amused-256 --image in.png --source "a cat" --target "a dog" --out out.png
    dicelib invert --image in.png --source "..." --save-inversion inv.pt --out recon.png   # model: shapes-oracle
    dicelib edit --model shapes --inversion inv.pt --target "..." --out out.png        # the learned shapes model
    dicelib edit-text --model text --context "Negative Sentiment: After the storm." \
                      --target-context "Positive Sentiment: After the storm." --text "The garden looked ruined."
    dicelib models
    dicelib sweep shapes --lambdas 0.5,0.7,0.9 --taus 0.6,0.8 --engine ray --address auto
    dicelib demo-image --out demo.png          # a ShapesBench image and the two commands that edit it cleanly

Bad input (unknown model, missing weights, unreadable image, bad values, foreign inversion file)
ends with a one-line `Error: ...` and exit code 2, never a traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="DICE: invert images into discrete latents and edit them under new prompts.")

MODEL = typer.Option("shapes-oracle", "--model", "-m",
                     help="registry name (see `dicelib models`) or <family>:<path>; default shapes-oracle, the exact "
                          "ShapesBench denoiser (no weights); --model shapes: the learned one (models/shapes.pt)")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
SEED = typer.Option(0, "--seed", help="seed of every random draw (same seed, same output)")
STEPS = typer.Option(None, "--steps", help="inversion steps (default: 32 masked, the schedule's T multinomial)")
TAU = typer.Option(None, "--tau", help="start noise level in (0, 1] (default: the model's)")
CFG = typer.Option(None, "--cfg", help="guidance scale (default: the model's; with --inversion, its own; 1 = none)")
PSEUDO = typer.Option(None, "--pseudo-inverse",
                      help="onehot | model | lai (default: the model's, lai; exact reconstruction: onehot, lai)")
STORE = typer.Option(None, "--store", help="float32 | bfloat16 | none (none recomputes, constant memory)")
METHOD = typer.Option(None, "--method", help="masked | multinomial | next_scale (default: the model's; "
                                             "`dicelib models` lists what each serves)")
NOISE = typer.Option(None, "--noise", help="masked method: mask | uniform (default: the model's)")


def _fail(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def _readable_errors() -> Iterator[None]:
    """Turn dicelib's input errors (and unreadable files) into one line on stderr and exit code 2."""
    from .errors import DiceError

    try:
        yield
    except DiceError as err:  # includes MissingWeightsError and InversionFileError
        _fail(str(err))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        _fail(f"{err.strerror}: {err.filename}")


def _check_inputs(steps: int | None = None, tau: float | None = None, cfg: float | None = None,
                  pseudo_inverse: str | None = None, store: str | None = None,
                  lambdas: tuple[float, float] | None = None, injection: str | None = None, device: str | None = None,
                  image: Path | None = None, out: Path | None = None, save_inversion: Path | None = None,
                  inversion: Path | None = None) -> None:
    """Raise a DiceError for bad values, device or paths before any model loads (loading a real model takes a while)
    or anything is computed (a bad output path would otherwise fail after the whole edit)."""
    from .adapters.vq_codec import check_image_path, image_format
    from .errors import check_choice
    from .core.guidance import check_guidance
    from .core.injection import check_lambdas
    from .core.pseudo_inverse import PSEUDO_INVERSES, STORES
    from .core.schedules import check_steps, check_tau

    if steps is not None:
        check_steps(steps)
    if tau is not None:
        check_tau(tau)
    check_guidance(cfg, 1.0)
    if pseudo_inverse is not None:
        check_choice("pseudo_inverse", pseudo_inverse, PSEUDO_INVERSES)
    if store is not None:
        check_choice("store", store, STORES)
    if lambdas is not None:
        check_lambdas(lambdas[0], lambdas[1], injection or "add")
    if device is not None:
        _check_device(device)
    if image is not None:
        check_image_path(image)
    for option, path in (("--out", out), ("--save-inversion", save_inversion)):
        if path is not None:
            _check_writable(option, path)
    if out is not None:
        image_format(out)
    _check_distinct({"--image": image, "--inversion": inversion}, {"--out": out, "--save-inversion": save_inversion})


def _check_distinct(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Raise a DiceError when two outputs are one file, or an output is an input (links followed)."""
    import os

    from .errors import DiceError

    seen: dict[str, str] = {}
    for kind, paths in (("input", inputs), ("output", outputs)):
        for option, path in paths.items():
            if path is None:
                continue
            real = os.path.realpath(path)
            if real in seen and kind == "output":
                raise DiceError(f"{option} {str(path)!r} is the same file as {seen[real]}; give each output its "
                                "own path (and never the input's)")
            seen.setdefault(real, f"{option} {str(path)!r}")


def _check_device(device: str) -> None:
    """Raise a DiceError unless `device` is cpu, or cuda / cuda:N / mps where this machine has them."""
    import torch

    from .errors import DiceError

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    allowed = ["cpu"] + (["cuda"] if n else []) + [f"cuda:{i}" for i in range(n)]
    allowed += ["mps"] if torch.backends.mps.is_available() else []
    if device not in allowed:
        raise DiceError(f"device {device!r} is not available on this machine; expected one of {', '.join(allowed)}")


def _check_writable(option: str, path: Path) -> None:
    """Raise a DiceError unless a file can be written at `path` (missing folders are created when it is written)."""
    import tempfile

    from .errors import DiceError

    if path.is_dir():
        raise DiceError(f"{option} {str(path)!r} is a directory; give a file path")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise DiceError(f"{option} {str(path)!r}: {str(folder)!r} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise DiceError(f"{option} {str(path)!r}: cannot write in folder {str(folder)!r} ({err.strerror}); "
                        "give a path in a writable folder") from err


def _check_noise(settings: Any, noise: str | None) -> None:
    """Raise a DiceError when --noise is given for the multinomial method, which has no noise map to set."""
    from .errors import DiceError

    if noise is not None and settings.method != "masked":
        raise DiceError(f"--noise {noise} applies to the masked method only; this run uses method "
                        f"{settings.method!r}: drop --noise, or give --method masked")


def _generator(seed: int, model: Any) -> Any:
    """Return a generator on the model's device (draws of [B, D, K] noise stay on the accelerator)."""
    import torch

    from .core.protocol import model_device

    return torch.Generator(device=model_device(model)).manual_seed(int(seed))


def _settings(spec: Any, **given: Any) -> Any:
    """Return the model's settings (registry) with each option the user gave (not None) in its place."""
    return spec.settings.with_given(**given)


def _fits(model: Any, image: Path) -> bool:
    """Return whether IMAGE is the model's size; if not, say on stderr how it is cropped and resized."""
    from .adapters.vq_codec import fit_note

    note = fit_note(image, model.image_size)
    if note is not None:
        typer.echo(f"Warning: {note}", err=True)
    return note is None


def _invert(model: Any, image: Path, source: str, settings: Any, seed: int) -> Any:
    import dicelib

    _fits(model, image)
    x0 = model.encode_image(image)
    cond = model.encode_prompt([source])
    inv = dicelib.invert(model, x0, cond, generator=_generator(seed, model), progress=True, **settings.invert_kwargs())
    if inv.mismatch_rate is not None:
        typer.echo(f"pseudo-inverse 'model': argmax D(x0) differs from x0 at {100 * inv.mismatch_rate:.2f}% of tokens")
    return inv


def _save_output(model: Any, tokens: Any, out: Path) -> None:
    from .adapters.vq_codec import save_image

    save_image(model.decode(tokens)[0], out)
    typer.echo(f"wrote {out}")


@app.command()
def invert(
    image: Path = typer.Option(..., "--image", "-i", help="input image (PNG, JPEG, ...)"),
    source: str = typer.Option(..., "--source", "-s", help="prompt describing the input image"),
    save_inversion: Path = typer.Option(..., "--save-inversion", help="where to write the inversion (.pt)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the reconstruction image here"),
    model_name: str = MODEL, steps: Optional[int] = STEPS, tau: Optional[float] = TAU, cfg: Optional[float] = CFG,
    pseudo_inverse: str = PSEUDO, store: str = STORE, method: Optional[str] = METHOD, noise: Optional[str] = NOISE,
    seed: int = SEED, device: Optional[str] = DEVICE,
) -> None:
    """Invert IMAGE under the SOURCE prompt and save the inversion (reuse it with `edit --inversion`)."""
    import dicelib

    from .registry import load_model

    with _readable_errors():
        _check_inputs(steps, tau, cfg, pseudo_inverse, store, device=device, image=image, out=out,
                      save_inversion=save_inversion)
        model, spec = load_model(model_name, device, method)
        settings = _settings(spec, steps=steps, tau=tau, cfg_scale=cfg, pseudo_inverse=pseudo_inverse, store=store,
                             method=method, noise=noise)
        _check_noise(settings, noise)
        inv = _invert(model, image, source, settings, seed)
        inv.save(save_inversion)
        typer.echo(f"wrote {save_inversion} ({inv.num_edit_steps} steps, {inv.nbytes() / 2**20:.1f} MiB)")
        if out is not None:
            if inv.method == "next_scale":  # VARIN: the source prompt, lambda1 = 1, lambda2 = 0 gives the maps back
                x = dicelib.edit(model, inv, model.encode_prompt([source]), lambda1=1.0, lambda2=0.0, progress=True)
            else:
                x = dicelib.reconstruct(model, inv, progress=True)
            changed, total = _changed(x, inv.x0)
            of = "the input" if _fits_quietly(model, image) else f"the input as resized to {model.image_size}x{model.image_size}"
            typer.echo(f"reconstruction: {changed} of {total} tokens differ from {of}")
            _save_output(model, x, out)


@app.command()
def edit(
    target: str = typer.Option(..., "--target", "-t", help="prompt describing the edited image"),
    out: Path = typer.Option(..., "--out", "-o", help="where to write the edited image"),
    image: Optional[Path] = typer.Option(None, "--image", "-i", help="input image (or give --inversion)"),
    source: Optional[str] = typer.Option(None, "--source", "-s", help="prompt describing the input image"),
    inversion: Optional[Path] = typer.Option(None, "--inversion", help="reuse a saved inversion instead of inverting"),
    save_inversion: Optional[Path] = typer.Option(None, "--save-inversion", help="also save the inversion here"),
    lambda1: Optional[float] = typer.Option(None, "--lambda1", help="weight of the latents (source content)"),
    start_scale: Optional[int] = typer.Option(None, "--start-scale",
                                              help="next_scale: first regenerated scale (coarser maps kept; default 0)"),
    lambda2: Optional[float] = typer.Option(None, "--lambda2", help="weight of fresh Gumbel noise"),
    injection: Optional[str] = typer.Option(None, "--injection", help="add | variance_preserving | max"),
    model_name: str = MODEL, steps: Optional[int] = STEPS, tau: Optional[float] = TAU, cfg: Optional[float] = CFG,
    pseudo_inverse: str = PSEUDO, store: str = STORE, method: Optional[str] = METHOD, noise: Optional[str] = NOISE,
    seed: int = SEED, device: Optional[str] = DEVICE,
) -> None:
    """Edit an image (IMAGE + SOURCE, or a saved --inversion) towards the TARGET prompt."""
    import dicelib

    from .registry import load_model

    with _readable_errors():
        if inversion is not None and (image is not None or source is not None):
            _fail("give either --inversion, or --image with --source, not both")
        if inversion is None and (image is None or source is None):
            _fail("give --image and --source (or a saved --inversion)")
        _check_inputs(steps, tau, cfg, pseudo_inverse, store, (lambda1 or 0.0, lambda2 or 0.0), injection,
                      device=device, image=image, out=out, save_inversion=save_inversion, inversion=inversion)
        given = [o for o, v in (("--steps", steps), ("--tau", tau), ("--pseudo-inverse", pseudo_inverse),
                                ("--store", store), ("--method", method), ("--noise", noise)) if v is not None]
        if inversion is not None and given:
            _fail(f"{', '.join(given)} set how an image is inverted; --inversion {inversion} was already inverted "
                  "with its own settings: drop them, or invert again (`dicelib invert ...` or --image/--source)")
        inv = dicelib.Inversion.load(inversion) if inversion is not None else None  # a bad file fails before loading
        model, spec = load_model(model_name, device, method or (inv.method if inv is not None else None))
        settings = _settings(spec, steps=steps, tau=tau, cfg_scale=cfg, pseudo_inverse=pseudo_inverse, store=store,
                             method=method, noise=noise, lambda1=lambda1, lambda2=lambda2, injection=injection,
                             start_scale=start_scale)
        _check_noise(settings, noise)
        if inv is None:
            inv = _invert(model, image, source, settings, seed)
        if save_inversion is not None:
            inv.save(save_inversion)
            typer.echo(f"wrote {save_inversion}")
        # --cfg as given (1: guidance off); absent: None, so edit keeps the inversion's guidance
        x = dicelib.edit(model, inv, model.encode_prompt([target]), cfg_scale=cfg,
                         generator=_generator(seed + 1, model), progress=True, **settings.edit_kwargs())
        changed, total = _changed(x, inv.x0)
        typer.echo(f"edit: {changed} of {total} tokens changed ({100 * changed / total:.2f}%)")
        _save_output(model, x, out)


def _changed(x: Any, x0: Any) -> tuple[int, int]:
    """Return (tokens that differ, tokens) between two token tensors, or two lists of maps (next_scale: every scale)."""
    import torch

    x, x0 = [torch.cat([m.cpu() for m in v], 1) if isinstance(v, (list, tuple)) else v.cpu() for v in (x, x0)]
    return int((x != x0).sum()), x0.numel()


@app.command("edit-text")
def edit_text(
    text: str = typer.Option(..., "--text", help="the sentence to edit (inverted under --context)"),
    context: str = typer.Option(..., "--context", "-c", help="first sentence describing TEXT, e.g. 'Negative Sentiment: ...'"),
    target_context: str = typer.Option(..., "--target-context", "-t", help="first sentence the edit should fit"),
    model_name: str = typer.Option("text", "--model", "-m",
                                   help="text (the embedded model), a Hugging Face masked LM id (roberta-base) "
                                        "in the local cache, or a folder"),
    lambda1: Optional[float] = typer.Option(None, "--lambda1", help="weight of the latents (default 0.2, paper)"),
    lambda2: Optional[float] = typer.Option(None, "--lambda2", help="weight of fresh noise (default 0.8, paper)"),
    tau: Optional[float] = typer.Option(None, "--tau", help="start masking level in (0, 1] (default 0.7, paper)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="masked-method steps (default 32)"),
    pseudo_inverse: Optional[str] = typer.Option(None, "--pseudo-inverse",
                                                 help="lai | onehot | model (default lai; onehot, lai: exact)"),
    seed: int = SEED, device: Optional[str] = DEVICE,
) -> None:
    """Edit the sentence TEXT, written under CONTEXT, to fit TARGET_CONTEXT; print the edited sentence alone on stdout."""
    from dataclasses import replace

    import dicelib

    from .core.settings import resolve_lambda2
    from .errors import DiceError
    from .registry import TEXT_SETTINGS

    with _readable_errors():
        for option, value in (("--text", text), ("--context", context), ("--target-context", target_context)):
            if not value.strip():
                raise DiceError(f"{option} is empty; give a sentence")
        # a lambda1 given alone means lambda2 = 1 - lambda1, as everywhere in dicelib; neither: the paper's pair
        noise = lambda2 if lambda2 is not None else (None if lambda1 is not None else TEXT_SETTINGS.lambda2)
        settings = replace(TEXT_SETTINGS.with_given(steps=steps, tau=tau, pseudo_inverse=pseudo_inverse, lambda1=lambda1),
                           lambda2=noise)
        _check_inputs(steps, tau, None, pseudo_inverse, None,
                      (settings.lambda1, resolve_lambda2(settings.lambda1, settings.lambda2)), device=device)
        from .text.editing import load_masked_lm

        lm = load_masked_lm(model_name, device or "cpu")
        # a leading space is how the content sentence follows the context in the pair template
        x0, cond = lm.encode_pair([context], [text if text.startswith(" ") else " " + text])
        inv = dicelib.invert(lm, x0, cond, generator=_generator(seed, lm), progress=True, **settings.invert_kwargs())
        x = dicelib.edit(lm, inv, [target_context], generator=_generator(seed + 1, lm), progress=True,
                         **settings.edit_kwargs())
        changed = int((x.cpu() != x0.cpu()).sum())
        typer.echo(f"edit: {changed} of {x0.numel()} tokens changed (lambda1 {settings.lambda1:g}, lambda2 "
                   f"{resolve_lambda2(settings.lambda1, settings.lambda2):g}, tau {settings.tau:g}, "
                   f"{settings.pseudo_inverse})", err=True)
        typer.echo(text.strip() if changed == 0 else lm.decode(x)[0])


SWEEPS = {"shapes": "dicelib.image.shapes_sweep", "piebench": "dicelib.piebench.experiment"}


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def sweep(ctx: typer.Context, task: Optional[str] = typer.Argument(None, help="shapes | piebench")) -> None:
    """Run a sweep on this machine or a Ray cluster and merge it (`dicelib sweep TASK --help` lists TASK's options).

    shapes: a lambda1 x tau grid on ShapesBench cases (the `shapes-sweep` stage); piebench: the PIE-Bench
    experiment (experiments/piebench). Common options: --engine local|ray, --address auto, --workers N.
    A rerun skips the units already recorded.
    """
    import importlib

    if task in (None, "-h", "--help"):
        typer.echo(ctx.get_help())
        raise typer.Exit(code=0 if task else 2)
    if task not in SWEEPS:
        _fail(f"unknown sweep {task!r}; expected one of {', '.join(SWEEPS)}")
    with _readable_errors():
        importlib.import_module(SWEEPS[task]).main(list(ctx.args))


def _fits_quietly(model: Any, image: Path) -> bool:
    from .adapters.vq_codec import fit_note

    return fit_note(image, model.image_size) is None


DEMO_TAU = 0.6  # the demo's edits regenerate 60% of the trajectory: enough to recolour or reshape an object in place;
# at the registry's 0.8 the oracle redraws whole objects elsewhere (tests/test_cli.py checks the printed edit)


@app.command("demo-image")
def demo_image(
    out: Path = typer.Option(Path("demo.png"), "--out", "-o", help="where to write the image (PNG)"),
    edit_type: str = typer.Option("change_colour", "--edit-type",
                                  help="change_shape | change_colour | change_background | change_size | "
                                       "add_object | remove_object"),
    seed: int = SEED,
) -> None:
    """Write a 16x16 ShapesBench image and print the commands that invert and edit it with the default model,
    shapes-oracle (add `--model shapes` to both for the learned model, models/shapes.pt)."""
    import numpy as np

    from .adapters.vq_codec import save_image
    from .image import shapesbench as sb

    with _readable_errors():
        if edit_type not in sb.EDIT_TYPES:
            _fail(f"unknown --edit-type {edit_type!r}; expected one of {', '.join(sb.EDIT_TYPES)}")
        _check_inputs(out=out)
        if seed < 0:
            _fail(f"--seed {seed} is not allowed; expected an int >= 0")
        source, target = sb.random_case(np.random.default_rng(seed), edit_type)
        rgb = sb.to_rgb(sb.render(source))  # [16, 16, 3] uint8: the palette pixels are the model's tokens
        save_image(_rgb_tensor(rgb), out)
        src, tgt = sb.prompt(source), sb.prompt(target)
        typer.echo(f"wrote {out} ({sb.SIZE}x{sb.SIZE}): {src}\n"
                   f"try it with the default model, shapes-oracle (the exact ShapesBench denoiser, no weights):\n"
                   f"  dicelib invert --image {out} --source \"{src}\" --tau {DEMO_TAU:g} --save-inversion inv.pt "
                   f"--out recon.png\n"
                   f"  dicelib edit --inversion inv.pt --target \"{tgt}\" --out edited.png\n"
                   f"add --model shapes to both for the learned model (models/shapes.pt)")


def _rgb_tensor(rgb: Any) -> Any:
    """Return an RGB uint8 array [H, W, 3] as an image tensor [3, H, W] in [0, 1]."""
    import torch

    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0


def _weights_status(name: str, spec: Any) -> str:
    """Return whether `name`'s weights are on this machine: present, missing, or needs none."""
    from .errors import DiceError

    if name == "shapes-oracle" or name.startswith("random-"):
        return "needs none" + (" (random)" if name.startswith("random-") else "")
    try:
        if spec.family == "shapes":
            from .image.shapes_model import CHECKPOINT

            return "present" if CHECKPOINT.is_file() else "missing (train-shapes)"
        if spec.family == "var":
            from .adapters.var import registry_depth, weights_status

            return "present" if weights_status(registry_depth(name)) == "in HF cache" else "missing"
        if spec.family == "paella":
            from .adapters.paella import BYT5_ID, CLIP_ID, Paella, locate

            locate(Paella.repo_id, BYT5_ID, CLIP_ID)
            return "present"
        from .adapters.hub import resolve_snapshot

        resolve_snapshot(name)
        return "present"
    except DiceError:  # MissingWeightsError, or a name that is no folder or Hugging Face id
        return "missing"


@app.command()
def models() -> None:
    """List the model names `--model` accepts and whether their weights are on this machine."""
    from .registry import REGISTRY

    for name, spec in sorted(REGISTRY.items()):
        typer.echo(f"{name:32s} {spec.family:13s} {_weights_status(name, spec):24s} {','.join(spec.served()):30s} "
                   f"{spec.description}")


if __name__ == "__main__":
    app()
