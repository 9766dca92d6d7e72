"""Tiny random-weight CogVideoX 1.0 and 1.5 image-to-video pipelines, built from configs in code.

Nothing is downloaded: the tokenizer and T5 text encoder are left out and the runs pass prompt embeddings, which
`CogVideoXImageToVideoPipeline` accepts. The VAE compresses 4x in space and 4x in time, so a 32 x 32, 9-frame
video is 3 latent frames of 8 x 8 for CogVideoX 1.0; CogVideoX 1.5 (`patch_size_t=2`) pads that to 4 latent
frames.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXTransformer3DModel,
)

from .families import Family
from .tiny_wan import image

LATENT_CHANNELS = 4
TEXT_DIM = 16
TEXT_TOKENS = 8
SIZE = 32
LATENT_SIZE = SIZE // 4
GUIDANCE = 6.0
# The CogVideoX-5B checkpoints' scheduler settings: v-prediction, zero terminal SNR, trailing timesteps.
SCHEDULER_CONFIG = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "set_alpha_to_one": True,
    "timestep_spacing": "trailing",
    "clip_sample": False,
}
SCHEDULERS = {"ddim": CogVideoXDDIMScheduler, "dpm": CogVideoXDPMScheduler}


def _vae(invert_scale_latents: bool) -> AutoencoderKLCogVideoX:
    """Three blocks: 4x spatial compression (two downsamplings), 4x temporal.

    CogVideoX 1.5's VAE sets `invert_scale_latents`: the pipeline divides its image latents by the scaling factor.
    """
    return AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 3,
        up_block_types=("CogVideoXUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8),
        latent_channels=LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        sample_height=SIZE,
        sample_width=SIZE,
        invert_scale_latents=invert_scale_latents,
    )


def _transformer(version: str) -> CogVideoXTransformer3DModel:
    """CogVideoX-5B-I2V's layout (rotary and learned positions), or CogVideoX 1.5's (temporal patches, ofs)."""
    shared = {
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "in_channels": 2 * LATENT_CHANNELS,
        "out_channels": LATENT_CHANNELS,
        "time_embed_dim": 32,
        "text_embed_dim": TEXT_DIM,
        "num_layers": 2,
        "sample_width": LATENT_SIZE,
        "sample_height": LATENT_SIZE,
        "sample_frames": 9,
        "patch_size": 2,
        "max_text_seq_length": TEXT_TOKENS,
        "use_rotary_positional_embeddings": True,
    }
    if version == "1.0":
        return CogVideoXTransformer3DModel(**shared, use_learned_positional_embeddings=True)
    return CogVideoXTransformer3DModel(**shared, patch_size_t=2, ofs_embed_dim=32, patch_bias=False)


def cogvideox(version: str = "1.0", scheduler: str = "ddim") -> CogVideoXImageToVideoPipeline:
    """A CogVideoX I2V pipeline.

    Args:
        version: `"1.0"` (CogVideoX-5B-I2V) or `"1.5"` (CogVideoX 1.5 5B I2V).
        scheduler: `"ddim"` (`CogVideoXDDIMScheduler`) or `"dpm"` (`CogVideoXDPMScheduler`); neither keeps a step
            index.
    """
    torch.manual_seed(0)
    pipe = CogVideoXImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_vae(invert_scale_latents=version == "1.5"),
        transformer=_transformer(version),
        scheduler=SCHEDULERS[scheduler](**SCHEDULER_CONFIG),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def cogvideox15(scheduler: str = "ddim") -> CogVideoXImageToVideoPipeline:
    """A CogVideoX 1.5 I2V pipeline."""
    return cogvideox("1.5", scheduler)


def call_kwargs(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 9-frame, 32 x 32 run at CFG 6 with fixed prompt embeddings."""
    embeds = torch.randn(2, TEXT_TOKENS, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    return {
        "image": image(seed, size=SIZE),
        "prompt_embeds": embeds[:1],
        "negative_prompt_embeds": embeds[1:],
        "height": SIZE,
        "width": SIZE,
        "num_frames": 9,
        "num_inference_steps": 4,
        "guidance_scale": GUIDANCE,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


FAMILIES = {
    "cogvideox": Family("cogvideox", cogvideox, call_kwargs),
    "cogvideox1.5": Family("cogvideox", cogvideox15, call_kwargs),
    # a stochastic scheduler: the generator's draws must be the same with ALG off as without ALG
    "cogvideox-dpm": Family("cogvideox", functools.partial(cogvideox, scheduler="dpm"), call_kwargs),
}
