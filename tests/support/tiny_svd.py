"""A tiny random-weight Stable Video Diffusion pipeline, built from configs in code (nothing is downloaded).

The VAE has two blocks, so it compresses 2x in space: a 32 x 32 image is an 8 + 8 channel UNet input of
16 x 16 per frame. The scheduler is SVD's own: Euler with Karras sigmas from 700 to 0.002, v-prediction and
continuous timesteps.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

from .families import Family
from .tiny_wan import image

SIZE = 32
FRAMES = 3
IMAGE_EMBED_DIM = 16
TIME_EMBED_DIM = 8  # per added time id (fps, motion bucket, noise augmentation)
MIN_GUIDANCE = 1.5
MAX_GUIDANCE = 4.0


def _unet() -> UNetSpatioTemporalConditionModel:
    return UNetSpatioTemporalConditionModel(
        sample_size=SIZE // 2,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 32),
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=3 * TIME_EMBED_DIM,
        layers_per_block=1,
        cross_attention_dim=IMAGE_EMBED_DIM,
        num_attention_heads=(2, 2),
        num_frames=FRAMES,
    )


def _vae() -> AutoencoderKLTemporalDecoder:
    return AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        block_out_channels=(32, 32),
        layers_per_block=1,
        latent_channels=4,
    )


def _image_encoder() -> CLIPVisionModelWithProjection:
    """The pipeline resizes PIL images to 224 x 224 for CLIP; patches of 32 make 49 tokens."""
    config = CLIPVisionConfig(
        hidden_size=8,
        projection_dim=IMAGE_EMBED_DIM,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=224,
        patch_size=32,
    )
    return CLIPVisionModelWithProjection(config)


def svd_scheduler() -> EulerDiscreteScheduler:
    """The scheduler configuration SVD and SVD-XT ship with."""
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        interpolation_type="linear",
        sigma_min=0.002,
        sigma_max=700.0,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )


def svd() -> StableVideoDiffusionPipeline:
    """Stable Video Diffusion: a spatio-temporal UNet on 4 latent + 4 image-latent channels, a CLIP image encoder."""
    torch.manual_seed(0)
    pipe = StableVideoDiffusionPipeline(
        vae=_vae(),
        image_encoder=_image_encoder(),
        unet=_unet(),
        scheduler=svd_scheduler(),
        feature_extractor=CLIPImageProcessorPil(crop_size=224, size=224),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_kwargs(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 3-frame, 32 x 32 run with per-frame guidance from 1.5 to 4.0."""
    return {
        "image": image(seed, size=SIZE),
        "height": SIZE,
        "width": SIZE,
        "num_frames": FRAMES,
        "num_inference_steps": 4,
        "min_guidance_scale": MIN_GUIDANCE,
        "max_guidance_scale": MAX_GUIDANCE,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


FAMILIES = {"svd": Family("svd", svd, call_kwargs, denoisers=("unet",), counted="time_embedding")}
