"""Return random-weight diffusers/transformers components for the image adapters (no download).

Three sizes: "tiny" (tests: a few thousand parameters), "small" (CPU benchmarks), "real" (the
published checkpoints' shapes: aMUSEd-256 with 16x16 tokens and 8192 codes, VQ-Diffusion ITHQ with
32x32 tokens, 4096 codes and 36 layers, the VQ autoencoders' channel widths approximate; Paella v3
exactly, 128x128 tokens of 512 px images, with ByT5-XL's encoder and CLIP ViT-H/14's text tower).
The tokenizer is a character-level CLIP tokenizer built in memory, so any lowercase prompt maps to
distinct ids without a vocabulary file.
"""

from __future__ import annotations

import string
from typing import Any

import torch

from ..errors import check_choice

SIZES = ("tiny", "small", "real")


def char_tokenizer(max_length: int = 16) -> Any:
    """Return a CLIPTokenizer over single characters (offline; ids < 128)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for ch in string.ascii_lowercase + string.digits + ".,'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))  # CLIP's BPE marks the last character of a word
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _clip_text_config(size: str, projection: bool) -> Any:
    from transformers import CLIPTextConfig

    if size == "real":  # ViT-B/32 text (VQ-Diffusion) or ViT-L/14 text with projection (aMUSEd)
        width = 768 if projection else 512
        return CLIPTextConfig(hidden_size=width, intermediate_size=4 * width, num_attention_heads=width // 64,
                              num_hidden_layers=12, vocab_size=49408, max_position_embeddings=77,
                              projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    width = 8 if size == "tiny" else 32
    return CLIPTextConfig(hidden_size=width, intermediate_size=2 * width, num_attention_heads=1 if size == "tiny" else 4,
                          num_hidden_layers=1, vocab_size=128, max_position_embeddings=77, projection_dim=width,
                          bos_token_id=0, eos_token_id=2, pad_token_id=1)


def vq_diffusion_components(size: str = "tiny", seed: int = 0, text: bool = True) -> dict[str, Any]:
    """Return keyword arguments for VQDiffusion(...) with random weights of the given size."""
    from diffusers import Transformer2DModel, VQDiffusionScheduler, VQModel
    from diffusers.pipelines.deprecated.vq_diffusion.pipeline_vq_diffusion import (
        LearnedClassifierFreeSamplingEmbeddings,
    )
    from transformers import CLIPTextModel

    check_choice("size", size, SIZES)
    torch.manual_seed(seed)  # diffusers/transformers initialise from the global generator
    k, side, steps = {"tiny": (16, 4, 10), "small": (256, 8, 100), "real": (4096, 32, 100)}[size]
    heads, head_dim, layers = {"tiny": (1, 8, 1), "small": (2, 16, 2), "real": (16, 88, 36)}[size]
    text_cfg = _clip_text_config(size, projection=False)
    tokens = 77 if size == "real" else 16
    transformer = Transformer2DModel(
        num_vector_embeds=k + 1, sample_size=side, num_attention_heads=heads, attention_head_dim=head_dim,
        num_layers=layers, cross_attention_dim=text_cfg.hidden_size, num_embeds_ada_norm=steps,
        norm_type="ada_norm", attention_bias=True, activation_fn="geglu-approximate")
    if size == "real":
        vq_kw = dict(block_out_channels=[128, 256, 256, 512], layers_per_block=2, latent_channels=256, vq_embed_dim=128)
    else:  # 2 levels: an image of 2 * side pixels gives side x side tokens
        vq_kw = dict(block_out_channels=[32, 64], layers_per_block=1, latent_channels=3, vq_embed_dim=3)
    levels = len(vq_kw["block_out_channels"])
    out = dict(
        transformer=transformer,
        scheduler=VQDiffusionScheduler(num_vec_classes=k + 1, num_train_timesteps=steps),
        learned_embeddings=LearnedClassifierFreeSamplingEmbeddings(learnable=True, hidden_size=text_cfg.hidden_size,
                                                                   length=tokens),
        text_encoder=None, tokenizer=None,
    )
    with torch.no_grad():  # a non-zero unconditional embedding, so guidance does something
        out["learned_embeddings"].embeddings.normal_()
    out["vqvae"] = VQModel(down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
                           num_vq_embeddings=k, **vq_kw)
    if text:
        out["text_encoder"], out["tokenizer"] = CLIPTextModel(text_cfg), char_tokenizer(tokens)
    return out


def amused_components(size: str = "tiny", seed: int = 0, text: bool = True) -> dict[str, Any]:
    """Return keyword arguments for Amused(...) with random weights of the given size."""
    from diffusers import AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextModelWithProjection

    check_choice("size", size, SIZES)
    torch.manual_seed(seed)
    text_cfg = _clip_text_config(size, projection=True)
    if size == "real":  # UVit2DModel's defaults are aMUSEd's; 16x16 tokens for amused-256
        transformer = UVit2DModel(sample_size=16)
        vq_kw = dict(block_out_channels=[128, 256, 256, 512, 768], layers_per_block=2, latent_channels=64,
                     num_vq_embeddings=8192, norm_num_groups=32)
    else:
        width, k, side = (8, 8, 8) if size == "tiny" else (64, 256, 8)
        transformer = UVit2DModel(
            hidden_size=width, use_bias=False, cond_embed_dim=text_cfg.projection_dim, micro_cond_encode_dim=2,
            micro_cond_embed_dim=10, encoder_hidden_size=text_cfg.hidden_size, vocab_size=k + 8, codebook_size=k,
            in_channels=width, block_out_channels=width, num_res_blocks=1, downsample=True, upsample=True,
            block_num_heads=1, num_hidden_layers=1 if size == "tiny" else 2, num_attention_heads=1,
            intermediate_size=2 * width, layer_norm_eps=1e-6, sample_size=side)
        vq_kw = dict(block_out_channels=[8], layers_per_block=1, latent_channels=8, num_vq_embeddings=k, norm_num_groups=8)
    levels = len(vq_kw["block_out_channels"])
    cfg = transformer.config
    out = dict(transformer=transformer, scheduler=AmusedScheduler(mask_token_id=cfg.vocab_size - 1),
               text_encoder=None, tokenizer=None)
    out["vqvae"] = VQModel(down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
                           mid_block_add_attention=False, lookup_from_codebook=True, **vq_kw)
    if text:
        tokens = 77 if size == "real" else 16
        out["text_encoder"], out["tokenizer"] = CLIPTextModelWithProjection(text_cfg), char_tokenizer(tokens)
    return out


def _t5_config(size: str) -> Any:
    from transformers import T5Config

    if size == "real":  # google/byt5-xl (the encoder half is used)
        return T5Config(vocab_size=384, d_model=2560, d_kv=64, d_ff=6720, num_layers=36, num_decoder_layers=12,
                        num_heads=32, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    width = 8 if size == "tiny" else 32
    return T5Config(vocab_size=384, d_model=width, d_kv=width // 2, d_ff=2 * width, num_layers=1, num_heads=2,
                    feed_forward_proj="gated-gelu", tie_word_embeddings=False)


def paella_components(size: str = "tiny", seed: int = 0, text: bool = True) -> dict[str, Any]:
    """Return keyword arguments for Paella(...) with random weights of the given size (and its resolution)."""
    from diffusers.pipelines.deprecated.wuerstchen import PaellaVQModel
    from transformers import ByT5Tokenizer, CLIPTextConfig, CLIPTextModelWithProjection, T5EncoderModel

    from .paella_net import PaellaNet

    check_choice("size", size, SIZES)
    torch.manual_seed(seed)
    t5_cfg = _t5_config(size)
    if size == "real":  # CLIP ViT-H/14 text tower; PaellaNet's and PaellaVQModel's defaults are the checkpoints'
        clip_cfg = CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                  num_hidden_layers=24, vocab_size=49408, max_position_embeddings=77, projection_dim=1024, hidden_act="gelu",
                                  bos_token_id=49406, eos_token_id=49407, pad_token_id=0)
        out = dict(transformer=PaellaNet(byt5_embd=t5_cfg.d_model, clip_embd=clip_cfg.projection_dim),
                   vqvae=PaellaVQModel(), resolution=512)
    else:
        clip_cfg = _clip_text_config(size, projection=True)
        width, k, side = (8, 16, 32) if size == "tiny" else (32, 256, 64)
        out = dict(transformer=PaellaNet(c_in=width, c_out=width, num_labels=k, c_r=8, c_cond=width,
                                         c_hidden=[width, 2 * width], nhead=[-1, 2],
                                         blocks=[1, 1 if size == "tiny" else 2],
                                         level_config=["CT", "CTA"], clip_embd=clip_cfg.projection_dim,
                                         byt5_embd=t5_cfg.d_model, dropout=0.0),
                   vqvae=PaellaVQModel(levels=2, bottleneck_blocks=1, embed_dim=2 * width, latent_channels=4,
                                       num_vq_embeddings=k),
                   resolution=side)  # 4 pixels per token: side / 4 tokens a side
        with torch.no_grad():  # unit-scale latents (a trained VQ's) and codes, so random images use many codes
            out["vqvae"].down_blocks[-1][1].running_var.fill_(0.01)
            out["vqvae"].vquantizer.embedding.weight.normal_()
    out.update(text_encoder=None, tokenizer=None, byt5_encoder=None, byt5_tokenizer=None)
    if text:
        tokens = 77 if size == "real" else 16
        out["text_encoder"], out["tokenizer"] = CLIPTextModelWithProjection(clip_cfg), char_tokenizer(tokens)
        out["byt5_encoder"], out["byt5_tokenizer"] = T5EncoderModel(t5_cfg), ByT5Tokenizer()
    return out


def random_vq_diffusion(size: str = "tiny", seed: int = 0, device: Any = None, **kw: Any) -> Any:
    """Return a VQDiffusion adapter with random weights (see vq_diffusion_components)."""
    from .vq_diffusion import VQDiffusion

    return VQDiffusion.from_components(**vq_diffusion_components(size, seed, **kw), device=device,
                                       name=f"random-vq-diffusion-{size}")


def random_amused(size: str = "tiny", seed: int = 0, device: Any = None, **kw: Any) -> Any:
    """Return an Amused adapter with random weights (see amused_components)."""
    from .amused import Amused

    return Amused.from_components(**amused_components(size, seed, **kw), device=device, name=f"random-amused-{size}")


def random_paella(size: str = "tiny", seed: int = 0, device: Any = None, **kw: Any) -> Any:
    """Return a Paella adapter with random weights (see paella_components)."""
    from .paella import Paella

    return Paella.from_components(**paella_components(size, seed, **kw), device=device, name=f"random-paella-{size}")


def var_components(size: str = "tiny", seed: int = 0, device: Any = None) -> dict[str, Any]:
    """Return keyword arguments for VAR(vae, net) with random weights of the given size.

    "tiny": a 2-block transformer over 4 scales (1..4, 30 tokens, K = 16) and an 8 px VAE; "small": 4
    blocks, 7 scales (1..8, 155 tokens, K = 1024), a 32 px VAE; "real": VAR-d16 and the published
    tokenizer (10 scales, 680 tokens, K = 4096, 256 px). All keep the 1000 ImageNet classes, so class
    names work. Built on `device` (the real size initialises faster on a GPU).
    """
    from .var_net import VARNet
    from .var_vae import VQVAE

    check_choice("size", size, SIZES)
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        if size == "real":
            from .var import VAE_KWARGS, published_kwargs

            net, vae = VARNet(**published_kwargs(16)), VQVAE(**VAE_KWARGS)
        else:
            tiny = size == "tiny"
            pns = (1, 2, 3, 4) if tiny else (1, 2, 3, 4, 5, 6, 8)
            k, cvae = (16, 4) if tiny else (1024, 16)
            net = VARNet(vocab_size=k, Cvae=cvae, depth=2 if tiny else 4, embed_dim=16 if tiny else 256,
                         num_heads=2 if tiny else 4, patch_nums=pns)
            vae = VQVAE(vocab_size=k, z_channels=cvae, ch=32, ch_mult=(1, 2) if tiny else (1, 1, 2),
                        num_res_blocks=1, v_patch_nums=pns)
        with torch.no_grad():  # codes at a tenth of the random encoder's feature spread, so random images use many
            vae.quantize.embedding.weight.normal_(0, 0.02)
    return dict(vae=vae, net=net)


def random_var(size: str = "tiny", seed: int = 0, device: Any = None, **kw: Any) -> Any:
    """Return a VAR adapter with random weights (see var_components)."""
    from .var import VAR

    return VAR(**var_components(size, seed, device), device=device, name=f"random-var-{size}", **kw)
