"""Tiny random-weight Sana-Video I2V and Kandinsky 5 I2V pipelines, built from configs in code.

Nothing is downloaded: the text encoders and tokenizers are left out and the runs pass prompt embeddings.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    Kandinsky5I2VPipeline,
    Kandinsky5Transformer3DModel,
    SanaImageToVideoPipeline,
    SanaVideoTransformer3DModel,
)

from .families import Family
from .tiny_wan import _vae as wan_vae
from .tiny_wan import image

SANA_TEXT_DIM = 16
K5_LATENT_CHANNELS = 4
K5_TEXT_DIM = 16
K5_POOLED_DIM = 8
TEXT_TOKENS = 6


def sana_i2v() -> SanaImageToVideoPipeline:
    """Sana-Video I2V with the tiny Wan VAE (8x in space, 4x in time): 64 x 64, 9 frames are 3 latent frames, 8 x 8."""
    torch.manual_seed(0)
    transformer = SanaVideoTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=SANA_TEXT_DIM,
        sample_size=8,
        patch_size=(1, 2, 2),
        rope_max_seq_len=32,
    )
    pipe = SanaImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=wan_vae(),
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def kandinsky5_i2v() -> Kandinsky5I2VPipeline:
    """Kandinsky 5 I2V with `visual_cond` (4 latent + 4 zero + 1 mask channels, channels last) and a HunyuanVideo VAE.

    The VAE compresses 8x in space and 4x in time: 32 x 32, 17 frames are 5 latent frames of 4 x 4 (the pipeline's
    final first-frame normalization needs at least 5).
    """
    torch.manual_seed(0)
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=K5_LATENT_CHANNELS,
        out_visual_dim=K5_LATENT_CHANNELS,
        in_text_dim=K5_TEXT_DIM,
        in_text_dim2=K5_POOLED_DIM,
        time_dim=16,
        patch_size=(1, 2, 2),
        model_dim=32,
        ff_dim=32,
        num_text_blocks=1,
        num_visual_blocks=2,
        axes_dims=(4, 6, 6),
        visual_cond=True,
    )
    _randomize_zero_initialized(transformer)
    vae = AutoencoderKLHunyuanVideo(
        latent_channels=K5_LATENT_CHANNELS,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        norm_num_groups=2,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
    )
    pipe = Kandinsky5I2VPipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _randomize_zero_initialized(module: torch.nn.Module) -> None:
    """Draw the parameters a model zero-initializes (Kandinsky's modulations), so every block mixes its tokens."""
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.02)


def _embeddings(seed: int, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    both = torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed))
    return both[:1], both[1:]


def sana_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 9-frame, 64 x 64 Sana-Video I2V run with CFG 5 and fixed prompt embeddings."""
    positive, negative = _embeddings(seed, TEXT_TOKENS, SANA_TEXT_DIM)
    mask = (torch.arange(TEXT_TOKENS) < TEXT_TOKENS - 1).long()[None]
    return {
        "image": image(seed),
        "prompt_embeds": positive,
        "prompt_attention_mask": mask,
        "negative_prompt": None,
        "negative_prompt_embeds": negative,
        "negative_prompt_attention_mask": mask,
        "height": 64,
        "width": 64,
        "frames": 9,
        "num_inference_steps": 4,
        "guidance_scale": 5.0,
        "use_resolution_binning": False,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


def kandinsky5_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 17-frame, 32 x 32 Kandinsky 5 I2V run with CFG 5 and fixed prompt embeddings."""
    positive, negative = _embeddings(seed, TEXT_TOKENS, K5_TEXT_DIM)
    pooled, negative_pooled = _embeddings(seed + 1, K5_POOLED_DIM)
    lengths = torch.tensor([0, TEXT_TOKENS], dtype=torch.int32)
    return {
        "image": image(seed, size=32),
        "prompt_embeds_qwen": positive,
        "prompt_embeds_clip": pooled,
        "negative_prompt_embeds_qwen": negative,
        "negative_prompt_embeds_clip": negative_pooled,
        "prompt_cu_seqlens": lengths,
        "negative_prompt_cu_seqlens": lengths,
        "height": 32,
        "width": 32,
        "num_frames": 17,
        "num_inference_steps": 4,
        "guidance_scale": 5.0,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


FAMILIES = {
    "sana-video-i2v": Family("sana-video-i2v", sana_i2v, sana_call),
    "kandinsky5-i2v": Family("kandinsky5-i2v", kandinsky5_i2v, kandinsky5_call, counted="out_layer"),
}
