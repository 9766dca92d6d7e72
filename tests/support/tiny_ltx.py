"""Tiny random-weight LTX-Video pipelines, built from configs in code (nothing is downloaded).

The text encoder and tokenizer are left out: runs pass prompt embeddings and their attention masks directly.
The VAE compresses 4x in space and 4x in time, so a 32 x 32, 5-frame video is 2 latent frames of 8 x 8, packed
into 128 tokens of 8 channels.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXConditionPipeline,
    LTXImageToVideoPipeline,
    LTXVideoTransformer3DModel,
)
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

from .families import Family
from .tiny_wan import image

LATENT_CHANNELS = 8
TEXT_DIM = 16
TEXT_TOKENS = 6
CFG = 3.0
SIZE = 32
LATENT_SIZE = 8
NUM_FRAMES = 5
LATENT_FRAMES = 2
KEYFRAME_INDEX = 4


def _transformer(patch_size: int = 1) -> LTXVideoTransformer3DModel:
    return LTXVideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        patch_size=patch_size,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=2,
        caption_channels=TEXT_DIM,
    )


def _vae() -> AutoencoderKLLTXVideo:
    """Random weights, so the posterior's spread is large: sampling it and taking its mode differ visibly.

    Its per-channel latent statistics are set away from 0 and 1, so the pipelines' normalization matters.
    """
    vae = AutoencoderKLLTXVideo(
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        patch_size=1,
        patch_size_t=1,
    )
    vae.latents_mean.uniform_(-0.5, 0.5)
    vae.latents_std.uniform_(0.5, 2.0)
    return vae


def ltx_i2v(patch_size: int = 1) -> LTXImageToVideoPipeline:
    """`LTXImageToVideoPipeline`; `patch_size` 2 gives a transformer whose tokens hold 2 x 2 latent pixels."""
    torch.manual_seed(0)
    pipe = LTXImageToVideoPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        transformer=_transformer(patch_size),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ltx_condition() -> LTXConditionPipeline:
    """`LTXConditionPipeline`: images (or videos) condition the frames they are given for."""
    torch.manual_seed(0)
    pipe = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        transformer=_transformer(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _mask(valid: int) -> torch.Tensor:
    """An attention mask whose first `valid` of the `TEXT_TOKENS` tokens are valid."""
    return (torch.arange(TEXT_TOKENS) < valid).float()[None]


def i2v_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 5-frame, 32 x 32 run at CFG 3 with fixed prompt embeddings."""
    embeds = torch.randn(2, TEXT_TOKENS, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    return {
        "image": image(seed, size=SIZE),
        "prompt_embeds": embeds[:1],
        "prompt_attention_mask": _mask(TEXT_TOKENS - 1),
        "negative_prompt_embeds": embeds[1:],
        "negative_prompt_attention_mask": _mask(TEXT_TOKENS - 2),
        "height": SIZE,
        "width": SIZE,
        "num_frames": NUM_FRAMES,
        "num_inference_steps": 4,
        "guidance_scale": CFG,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


def keyframes(seed: int = 0) -> list[LTXVideoCondition]:
    """An image at frame 0 and another at the last frame (a keyframe, put in front of the video's tokens)."""
    return [
        LTXVideoCondition(image=image(seed, size=SIZE), frame_index=0),
        LTXVideoCondition(image=image(seed + 1, size=SIZE), frame_index=KEYFRAME_INDEX),
    ]


def condition_keyframes_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """`i2v_call` for `LTXConditionPipeline`, conditioned on `keyframes` instead of one image."""
    return i2v_call(seed, image=None, conditions=keyframes(seed), **overrides)


FAMILIES = {
    "ltx-video": Family("ltx-video", ltx_i2v, i2v_call),
    "ltx-video-condition": Family("ltx-video-condition", ltx_condition, i2v_call),
    "ltx-video-condition-keyframes": Family("ltx-video-condition", ltx_condition, condition_keyframes_call),
}
