"""A tiny random-weight EasyAnimate inpaint pipeline, run as image-to-video; built from configs in code."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLMagvit,
    EasyAnimateInpaintPipeline,
    EasyAnimateTransformer3DModel,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent

from .families import Family
from .tiny_wan import image

LATENT_CHANNELS = 4
TEXT_DIM = 16
TEXT_TOKENS = 6
SIZE = 32


def easyanimate_i2v() -> EasyAnimateInpaintPipeline:
    """EasyAnimate inpaint: 4 latent + 4 mask-latent + 4 masked-video-latent channels (the mask VAE-encoded).

    `resize_inpaint_mask_directly=False` encodes the mask with the VAE; the other setting reads the VAE config's
    `cache_mag_vae`, which diffusers' `AutoencoderKLMagvit` does not register.
    """
    torch.manual_seed(0)
    transformer = EasyAnimateTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=3 * LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        time_embed_dim=2,
        text_embed_dim=TEXT_DIM,
        num_layers=1,
        sample_width=16,
        sample_height=16,
        patch_size=2,
        resize_inpaint_mask_directly=False,
    )
    vae = AutoencoderKLMagvit(
        in_channels=3,
        out_channels=3,
        down_block_types=("SpatialDownBlock3D",) + ("SpatialTemporalDownBlock3D",) * 3,
        up_block_types=("SpatialUpBlock3D",) + ("SpatialTemporalUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=2,
        spatial_group_norm=False,
    )
    pipe = EasyAnimateInpaintPipeline(
        vae=vae, text_encoder=None, tokenizer=None, transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def easyanimate_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """A 4-step, 5-frame, 32 x 32 image-to-video run, the image the kept first frame (`get_image_to_video_latent`)."""
    video, mask = get_image_to_video_latent(image(seed, SIZE), None, 5, (SIZE, SIZE))
    embeds = torch.randn(2, TEXT_TOKENS, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    mask_tokens = (torch.arange(TEXT_TOKENS) < TEXT_TOKENS - 1).float()[None]
    return {
        "video": video,
        "mask_video": mask,
        "prompt_embeds": embeds[:1],
        "negative_prompt_embeds": embeds[1:],
        "prompt_attention_mask": mask_tokens,
        "negative_prompt_attention_mask": mask_tokens,
        "height": SIZE,
        "width": SIZE,
        "num_frames": 5,
        "num_inference_steps": 4,
        "guidance_scale": 5.0,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


FAMILIES = {"easyanimate-i2v": Family("easyanimate-i2v", easyanimate_i2v, easyanimate_call)}
