"""Tiny random-weight Wan-family pipelines, built from configs in code (nothing is downloaded)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    SkyReelsV2ImageToVideoPipeline,
    SkyReelsV2Transformer3DModel,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanTransformer3DModel,
)
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

from .families import Family

TEXT_DIM = 32


def _vae(z_dim: int = 16) -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=3, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _transformer(in_channels: int, image_dim: int | None, cls: type = WanTransformer3DModel, **extra: Any):
    return cls(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=image_dim,
        **extra,
    )


def _image_encoder() -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessorPil]:
    config = CLIPVisionConfig(
        hidden_size=4,
        projection_dim=4,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        intermediate_size=16,
        patch_size=1,
    )
    return CLIPVisionModelWithProjection(config), CLIPImageProcessorPil(crop_size=64, size=64)


def _assembled(pipeline_class: type, *, image_encoder: bool, **components: Any) -> Any:
    """A pipeline without text encoder (the tests pass prompt embeddings), with the tiny VAE, progress bar off."""
    encoder, processor = _image_encoder() if image_encoder else (None, None)
    pipe = pipeline_class(
        tokenizer=None, text_encoder=None, image_encoder=encoder, image_processor=processor, vae=_vae(), **components
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def wan21(scheduler: Any = None, first_last_frame: bool = False) -> WanImageToVideoPipeline:
    """Wan 2.1 I2V: a 36-channel transformer (16 latent + 4 mask + 16 condition) and a CLIP image encoder.

    With `first_last_frame`, the transformer takes the CLIP tokens of two images (Wan 2.1 FLF2V).
    """
    torch.manual_seed(0)
    extra = {"pos_embed_seq_len": 2 * (64 * 64 + 1)} if first_last_frame else {}
    return _assembled(
        WanImageToVideoPipeline,
        image_encoder=True,
        transformer=_transformer(36, image_dim=4, **extra),
        scheduler=scheduler or FlowMatchEulerDiscreteScheduler(shift=3.0),
    )


def wan22() -> WanImageToVideoPipeline:
    """Wan 2.2 A14B I2V: two experts, no image encoder; with 4 steps the second expert takes steps 2 and 3."""
    torch.manual_seed(0)
    return _assembled(
        WanImageToVideoPipeline,
        image_encoder=False,
        transformer=_transformer(36, image_dim=None),
        transformer_2=_transformer(36, image_dim=None),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        boundary_ratio=0.7,
    )


def wan22_ti2v() -> WanImageToVideoPipeline:
    """Wan 2.2 TI2V-5B: the image latent overwrites the first latent frame (expand_timesteps)."""
    torch.manual_seed(0)
    return _assembled(
        WanImageToVideoPipeline,
        image_encoder=False,
        transformer=_transformer(16, image_dim=None),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        expand_timesteps=True,
    )


def skyreels_v2() -> SkyReelsV2ImageToVideoPipeline:
    """SkyReels-V2 I2V: the Wan 2.1 layout with SkyReels' own transformer and UniPC."""
    torch.manual_seed(0)
    return _assembled(
        SkyReelsV2ImageToVideoPipeline,
        image_encoder=True,
        transformer=_transformer(36, image_dim=4, cls=SkyReelsV2Transformer3DModel),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    )


def image(seed: int = 0, size: int = 64) -> Image.Image:
    """A random RGB image with plenty of high-frequency detail."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def call_kwargs(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 9-frame, 64 x 64 run with fixed prompt embeddings."""
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(2, 8, TEXT_DIM, generator=generator)
    return {
        "image": image(seed),
        "prompt_embeds": embeds[:1],
        "negative_prompt_embeds": embeds[1:],
        "height": 64,
        "width": 64,
        "num_frames": 9,
        "num_inference_steps": 4,
        "guidance_scale": 5.0,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


def _call_wan22(**overrides: Any) -> dict[str, Any]:
    return call_kwargs(**{"guidance_scale_2": 3.0, **overrides})


FAMILIES = {
    "wan2.1": Family("wan2.1", wan21, call_kwargs),
    "wan2.2": Family("wan2.2", wan22, _call_wan22, denoisers=("transformer", "transformer_2")),
    "wan2.2-ti2v": Family("wan2.2-ti2v", wan22_ti2v, call_kwargs),
    "skyreels-v2": Family("skyreels-v2", skyreels_v2, call_kwargs),
}
