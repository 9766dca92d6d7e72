"""A tiny random-weight MotifVideo image-to-video pipeline, built from configs in code (nothing is downloaded).

The text encoder (whose vision tower also embeds the image) is left out: the runs pass prompt embeddings with
their attention masks, and the transformer then gets no image embeddings.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, MotifVideoImage2VideoPipeline
from diffusers.guiders import BaseGuidance, ClassifierFreeGuidance
from diffusers.models.transformers.transformer_motif_video import MotifVideoTransformer3DModel

from .families import Family
from .tiny_wan import _vae, image

TEXT_DIM = 32
TEXT_TOKENS = 6
GUIDER_CFG = 5.0


def motif_i2v(guider: BaseGuidance | None = None) -> MotifVideoImage2VideoPipeline:
    """MotifVideo I2V: 16 latent + 16 image-latent + 1 mask channels, the Wan VAE, a CFG guider."""
    torch.manual_seed(0)
    transformer = MotifVideoTransformer3DModel(
        in_channels=33,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=1,
        num_single_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        qk_norm="rms_norm",
        text_embed_dim=TEXT_DIM,
        rope_axes_dim=(4, 4, 4),
    )
    pipe = MotifVideoImage2VideoPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        vae=_vae(),
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        guider=guider or ClassifierFreeGuidance(guidance_scale=GUIDER_CFG),
        feature_extractor=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def motif_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 9-frame, 32 x 32 run (CFG from the guider)."""
    embeds = torch.randn(2, TEXT_TOKENS, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    mask = (torch.arange(TEXT_TOKENS) < TEXT_TOKENS - 1).float()[None]
    return {
        "image": image(seed, 32),
        "prompt": None,
        "prompt_embeds": embeds[:1],
        "prompt_attention_mask": mask,
        "negative_prompt_embeds": embeds[1:],
        "negative_prompt_attention_mask": mask,
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "num_inference_steps": 4,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


FAMILIES = {"motif-i2v": Family("motif-i2v", motif_i2v, motif_call)}
