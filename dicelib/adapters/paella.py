"""Return Paella v3 wrapped as a masked-generative DiscreteDenoiser with uniform renoising for dicelib.

Paella (Rampas et al.; weights `dome272/Paella`, MIT) predicts raw logits over the 8192 codes of its
VQGAN f4 for every position of a token map in which noised positions hold random codes, not a
[MASK] (so `mask_id` is None), told the noise level r = t. Invert it with `method="masked",
noise="uniform"`. Parts: the denoiser is our `PaellaNet` (state_dict-compatible with
`paella_v3.pt`), the VQGAN is diffusers' `PaellaVQModel` (`vqgan_f4.pt`, quantizer key renamed),
the text encoders are ByT5-XL (`T5EncoderModel`, last hidden state of each prompt alone, as
training's "longest" padding gives for one prompt) and CLIP ViT-H/14 (`CLIPTextModelWithProjection`,
pooled projected embedding). A condition is one dict per prompt, {"byt5": [L, 2560], "clip":
[1024]}, in a list: prompts have different byte lengths, so rows are padded and masked only inside
`logits`, and every row computes as if alone. Guidance: the authors mix raw logits
`u + w (c - u)` with the negative caption as `u`; dicelib mixes log-probs, which differs only by a
per-position constant. The DICE authors' attention weights (1.2 on ByT5 tokens, 0.4 on CLIP tokens)
are on by default (`attention_weights=None`: the plain model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import torch

from ..core.atomic import atomic_write
from ..errors import DiceError, MissingWeightsError
from .base import VQImageAdapter
from .hub import load_component, missing_weights_message, place, resolve_snapshot

REPO_ID = "dome272/Paella"  # holds paella_v3.pt and vqgan_f4.pt
BYT5_ID = "google/byt5-xl"
CLIP_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"  # open_clip's ViT-H-14 laion2b_s32b_b79k in transformers format
DENOISER_FILE, VQGAN_FILE = "paella_v3.pt", "vqgan_f4.pt"
# optional in a folder: {"denoiser": PaellaNet kwargs, "vqgan": PaellaVQModel kwargs, "resolution": pixels}
CONFIG_FILE = "paella_config.json"
VQGAN_RENAMES = {"vquantizer.codebook.weight": "vquantizer.embedding.weight"}  # Paella's name -> diffusers'
NEGATIVE_PROMPT = "low quality, low resolution, bad image, blurry, blur"  # the authors' unconditional caption
ATTENTION_WEIGHTS = (1.2, 0.4)  # the DICE authors' scripts: weight of ByT5 tokens, of CLIP tokens
BYT5_MAX_LENGTH = 768  # training's truncation of ByT5 input bytes
FOLDER_LAYOUT = (f"a folder with {DENOISER_FILE}, {VQGAN_FILE}, byt5/ ({BYT5_ID} in Hugging Face format) "
                 f"and clip/ ({CLIP_ID})")


def read_state_dict(path: Path, renames: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Return the tensors at `path` ({"state_dict": ...} unwrapped), keys renamed; unreadable -> MissingWeightsError."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise MissingWeightsError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:200]}); download it again") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # the training scripts' checkpoint format
    renames = renames or {}
    return {renames.get(k, k): v for k, v in data.items()}


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """Return `module` holding `state` (strict; tensors taken over); other keys or shapes -> DiceError naming them."""
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise DiceError(f"{source} does not fit {type(module).__name__}: {str(err).splitlines()[1][:300]}") from None
    return module


class Paella(VQImageAdapter):
    """Paella v3 as a DiscreteDenoiser: `logits(x [B, D], t [B], [{"byt5": [L, H], "clip": [P]}] * B) -> [B, D, K]`."""

    method = "masked"  # dicelib.invert(..., method=...)
    noise = "uniform"  # random-code renoising, as Paella is trained
    mask_id = None  # no [MASK] input
    default_cfg = 10.0  # paper Table 7 (the authors' scripts: 8)
    repo_id = REPO_ID
    cond_format = 'conditions [{"byt5": [L, H], "clip": [P]}, ...] (one per row)'

    def __init__(self, vqvae: Any, transformer: Any, text_encoder: Any = None, tokenizer: Any = None,
                 byt5_encoder: Any = None, byt5_tokenizer: Any = None, resolution: int = 512,
                 attention_weights: tuple[float, float] | None = ATTENTION_WEIGHTS,
                 negative_prompt: str = NEGATIVE_PROMPT, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, name: str = "paella") -> None:
        super().__init__(vqvae, transformer, text_encoder, tokenizer, device, dtype, name)
        self.byt5_encoder = place(byt5_encoder, self.device, dtype) if byt5_encoder is not None else None
        self.byt5_tokenizer = byt5_tokenizer
        self.num_classes = int(transformer.num_labels)  # K
        if int(vqvae.config.num_vq_embeddings) != self.num_classes:
            raise DiceError(f"VQGAN has {vqvae.config.num_vq_embeddings} codes, the denoiser {self.num_classes}")
        scale = vqvae.config.up_down_scale_factor * 2 ** (vqvae.config.levels - 1)  # pixels per token side
        unit = scale * transformer.patch_size * 2 ** (transformer.levels - 1)
        if resolution % unit:
            raise DiceError(f"resolution {resolution} must be a multiple of {unit} (VQ downscale {scale} x the "
                            f"denoiser's patches and levels)")
        self.image_size = int(resolution)
        self.grid = (resolution // scale, resolution // scale)  # token map h x w, row-major
        self.num_positions = self.grid[0] * self.grid[1]  # D
        if attention_weights is not None and len(attention_weights) != 2:
            raise DiceError(f"attention_weights must be (ByT5 weight, CLIP weight) or None, got {attention_weights!r}")
        self.attention_weights = attention_weights
        self.negative_prompt = negative_prompt

    @classmethod
    def from_pretrained(cls, repo_id: str | Path | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype = torch.float32, byt5: str | Path = BYT5_ID, clip: str | Path = CLIP_ID,
                        **kwargs: Any) -> Self:
        """Return Paella v3 from a folder or the HF cache, never downloading; absent parts -> one MissingWeightsError.

        `repo_id` (default dome272/Paella) must hold paella_v3.pt and vqgan_f4.pt; the text encoders
        come from its byt5/ and clip/ subfolders when present, else from `byt5` and `clip` (ids in the
        HF cache, or folders). An optional paella_config.json (written by `save_pretrained`) gives
        other architectures; without it both checkpoints are the published ones. `dtype` applies to
        the denoiser and the text encoders (bfloat16 on CUDA halves their memory; T5 overflows in
        float16); the VQGAN stays float32. Other keyword arguments go to the constructor.
        """
        from diffusers.pipelines.deprecated.wuerstchen import PaellaVQModel
        from transformers import AutoTokenizer, CLIPTextModelWithProjection, T5EncoderModel

        from .paella_net import PaellaNet

        source = str(cls.repo_id if repo_id is None else repo_id)
        root, byt5_dir, clip_dir = locate(source, byt5, clip)
        config = json.loads((root / CONFIG_FILE).read_text()) if (root / CONFIG_FILE).is_file() else {}
        if "resolution" in config:
            kwargs.setdefault("resolution", config["resolution"])
        with torch.device("meta"):  # no random init of 1B parameters: the checkpoint's tensors are taken over
            net = PaellaNet(**config.get("denoiser", {}))
        net = load_weights(net, read_state_dict(root / DENOISER_FILE), str(root / DENOISER_FILE))
        vq = load_weights(PaellaVQModel(**config.get("vqgan", {})), read_state_dict(root / VQGAN_FILE, VQGAN_RENAMES),
                          str(root / VQGAN_FILE))
        parts = {"byt5_encoder": (T5EncoderModel, byt5_dir), "byt5_tokenizer": (AutoTokenizer, byt5_dir),
                 "text_encoder": (CLIPTextModelWithProjection, clip_dir), "tokenizer": (AutoTokenizer, clip_dir)}
        loaded = {key: load_component(kind, folder, "", str(folder)) for key, (kind, folder) in parts.items()}
        return cls(vq, net, device=device, dtype=dtype, name=source, **loaded, **kwargs)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Return `folder` after writing the layout `from_pretrained` reads (the official file names and keys)."""
        folder = Path(folder)
        if any(part is None for part in (self.text_encoder, self.tokenizer, self.byt5_encoder, self.byt5_tokenizer)):
            raise DiceError(f"{self.name} has no text encoders/tokenizers to save; build it with all four")
        renames = {new: old for old, new in VQGAN_RENAMES.items()}
        vq_state = {renames.get(k, k): v for k, v in self.vqvae.state_dict().items()}
        for name, state in ((DENOISER_FILE, self.transformer.state_dict()), (VQGAN_FILE, {"state_dict": vq_state})):
            atomic_write(folder / name, lambda f, state=state: torch.save(state, f), mode="wb")
        config = {"denoiser": self.transformer.config, "resolution": self.image_size,
                  "vqgan": {k: v for k, v in self.vqvae.config.items() if not k.startswith("_")}}
        atomic_write(folder / CONFIG_FILE, lambda f: json.dump(config, f, indent=1))
        for sub, encoder, tokenizer in (("byt5", self.byt5_encoder, self.byt5_tokenizer),
                                        ("clip", self.text_encoder, self.tokenizer)):
            encoder.save_pretrained(folder / sub)
            tokenizer.save_pretrained(folder / sub)
        return folder

    # --- conditions -------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: str | list[str]) -> list[dict[str, torch.Tensor]]:
        """Return one condition per prompt: {"byt5": ByT5 last states [L, H] (bytes + </s>), "clip": pooled CLIP [P]}."""
        if self.byt5_encoder is None or self.byt5_tokenizer is None:
            raise DiceError(f"{self.name} was built without a ByT5 encoder/tokenizer; pass {self.cond_format}")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        pooled = self.text_encoder(self.tokenize(prompts)).text_embeds  # [B, P]
        rows = []
        for prompt, clip in zip(prompts, pooled):  # one at a time: no padding, as in the authors' runs
            ids = self.byt5_tokenizer([prompt], max_length=BYT5_MAX_LENGTH, truncation=True,
                                      return_tensors="pt").input_ids.to(self.device)
            rows.append({"byt5": self.byt5_encoder(input_ids=ids).last_hidden_state[0], "clip": clip})
        return rows

    def null_condition(self) -> list[dict[str, torch.Tensor]]:
        """Return the unconditional condition (one row): the encoded negative caption, as the authors guide."""
        return self.encode_prompt([self.negative_prompt])

    def batch_cond(self, cond: Any, rows: int) -> dict[str, torch.Tensor | None]:
        """Return PaellaNet's condition inputs for `rows` rows: byt5 [B, L, H] (padded), byt5_mask, clip, cond_weights."""
        if isinstance(cond, dict) and {"byt5", "clip"} <= set(cond):  # batched tensors of one length
            cond = [{"byt5": s, "clip": c} for s, c in zip(cond["byt5"], cond["clip"])]
        if not isinstance(cond, (list, tuple)) or not all(isinstance(c, dict) and {"byt5", "clip"} <= set(c)
                                                          for c in cond):
            raise DiceError(f"Paella conditions are {self.cond_format} from encode_prompt; got {type(cond).__name__}")
        cond = list(cond) * rows if len(cond) == 1 else list(cond)
        if len(cond) != rows:
            raise DiceError(f"{len(cond)} conditions for {rows} rows of x")
        dtype = self.transformer.dtype
        states = [c["byt5"].to(self.device, dtype) for c in cond]  # each [L_i, H]
        lengths = torch.tensor([s.shape[0] for s in states], device=self.device)
        byt5 = torch.nn.utils.rnn.pad_sequence(states, batch_first=True)  # [B, L, H]
        keep = torch.arange(byt5.shape[1], device=self.device)[None] < lengths[:, None]  # [B, L]
        clip = torch.stack([c["clip"].to(self.device, dtype) for c in cond])  # [B, P]
        weights = None
        if self.attention_weights is not None:
            w_byt5, w_clip = self.attention_weights
            weights = torch.tensor([w_byt5] * byt5.shape[1] + [w_clip] * self.transformer.clip_seq_len,
                                   device=self.device)  # [L + clip tokens]; padding is masked anyway
        return {"byt5": byt5, "byt5_mask": None if bool(keep.all()) else keep, "clip": clip, "cond_weights": weights}

    # --- the protocol -----------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Return raw logits [B, D, K] (float32) for token ids x [B, D] at noise levels t [B] (Paella's r)."""
        ids = self.token_map(x)  # [B, h, w]
        rows = ids.shape[0]
        r = torch.as_tensor(t, dtype=torch.float32, device=self.device).reshape(-1)
        if r.numel() not in (1, rows):
            raise DiceError(f"t has {r.numel()} entries for {rows} rows")
        out = self.transformer(ids, r.expand(rows), **self.batch_cond(cond, rows))  # [B, K, h, w]
        return out.float().reshape(rows, self.num_classes, self.num_positions).transpose(1, 2)


def locate(source: str, byt5: str | Path, clip: str | Path) -> tuple[Path, Path, Path]:
    """Return the folders of the Paella checkpoints, ByT5 and CLIP; all that is absent -> one MissingWeightsError."""
    missing, downloads = [], []

    def find(ref: str | Path) -> Path | None:
        try:
            return resolve_snapshot(ref)
        except MissingWeightsError:
            return None

    root = find(source)
    absent = [f for f in (DENOISER_FILE, VQGAN_FILE) if root is None or not (root / f).is_file()]
    if absent:
        missing.append(f"{' and '.join(absent)} in {source}")
        downloads.append(f"{REPO_ID} {' '.join(absent)}")
    folders = []
    for sub, ref in (("byt5", byt5), ("clip", clip)):
        folder = root / sub if root is not None and (root / sub).is_dir() else find(ref)
        if folder is None:
            missing.append(str(ref))
            downloads.append(str(ref))
        folders.append(folder)
    if missing:
        raise MissingWeightsError(missing_weights_message(source, "missing: " + "; ".join(missing), downloads,
                                                          FOLDER_LAYOUT))
    return root, folders[0], folders[1]
