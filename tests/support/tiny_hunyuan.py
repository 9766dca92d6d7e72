"""Tiny random-weight HunyuanVideo-I2V and HunyuanVideo 1.5 I2V pipelines, built from configs in code.

Nothing is downloaded: the text encoders and tokenizers are left out and the runs pass prompt embeddings
(with their attention masks) directly, which both pipelines accept.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    AutoencoderKLHunyuanVideo15,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideo15ImageToVideoPipeline,
    HunyuanVideo15Transformer3DModel,
    HunyuanVideoImageToVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.guiders import BaseGuidance, ClassifierFreeGuidance
from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel

from .families import Family
from .tiny_wan import image

LATENT_CHANNELS = 4
TEXT_DIM = 16
POOLED_DIM = 8
BYT5_DIM = 8
TEXT_TOKENS = 6
EMBEDDED_GUIDANCE = 6.0
TRUE_CFG = 4.0
GUIDER_CFG = 5.0


SIGLIP_DIM = 12
HUNYUAN_TRANSFORMER = {
    "out_channels": LATENT_CHANNELS,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "num_layers": 1,
    "num_single_layers": 1,
    "num_refiner_layers": 1,
    "patch_size_t": 1,
    "guidance_embeds": True,
    "text_embed_dim": TEXT_DIM,
    "pooled_projection_dim": POOLED_DIM,
    "rope_axes_dim": (2, 2, 4),
}
"""The tiny HunyuanVideo transformer's settings shared by HunyuanVideo-I2V, FramePack and SkyReels-V1-Hunyuan."""


def hunyuan_vae() -> AutoencoderKLHunyuanVideo:
    """The tiny HunyuanVideo VAE (8x in space, 4x in time), with seeded weights."""
    torch.manual_seed(1)
    return AutoencoderKLHunyuanVideo(
        latent_channels=LATENT_CHANNELS,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
    )


def siglip_encoder() -> SiglipVisionModel:
    """A one-layer SigLIP image encoder of width `SIGLIP_DIM` for 16 x 16 images."""
    return SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=SIGLIP_DIM,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=4,
        )
    )


def hunyuan_i2v(image_condition_type: str = "token_replace") -> HunyuanVideoImageToVideoPipeline:
    """HunyuanVideo-I2V with a guidance-embedding transformer.

    `"token_replace"` (HunyuanVideo-I2V) takes the 4 latent channels, its frame 0 overwritten by the image
    latent; `"latent_concat"` (HunyuanVideo-I2V-33ch) takes 4 latent + 4 image-latent + 1 mask channels. The
    VAE compresses 8x in space and 4x in time: a 64 x 64, 9-frame video is 3 latent frames of 8 x 8.
    """
    torch.manual_seed(0)
    concatenated = image_condition_type == "latent_concat"
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * LATENT_CHANNELS + 1 if concatenated else LATENT_CHANNELS,
        patch_size=1,
        image_condition_type=image_condition_type,
        **HUNYUAN_TRANSFORMER,
    )
    vae = hunyuan_vae()
    pipe = HunyuanVideoImageToVideoPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None,
        tokenizer_2=None,
        image_processor=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def hunyuan_i2v_33ch() -> HunyuanVideoImageToVideoPipeline:
    """HunyuanVideo-I2V-33ch: the image latent and a frame mask concatenated to the latents."""
    return hunyuan_i2v("latent_concat")


def hunyuan15_i2v(guider: BaseGuidance | None = None) -> HunyuanVideo15ImageToVideoPipeline:
    """HunyuanVideo 1.5 I2V: 4 latent + 4 image-latent + 1 mask channels, a SigLIP image encoder, a CFG guider.

    The VAE compresses 4x in space and 2x in time; with `target_size=32` a 32 x 32 image gives a 32 x 32 video,
    9 frames of which are 5 latent frames of 8 x 8.
    """
    torch.manual_seed(0)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=2 * LATENT_CHANNELS + 1,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        text_embed_dim=TEXT_DIM,
        text_embed_2_dim=BYT5_DIM,
        image_embed_dim=SIGLIP_DIM,
        rope_axes_dim=(2, 2, 4),
        target_size=32,
        task_type="i2v",
    )
    vae = AutoencoderKLHunyuanVideo15(
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(16, 16),
        layers_per_block=1,
        spatial_compression_ratio=4,
        temporal_compression_ratio=2,
        downsample_match_channel=False,
        upsample_match_channel=False,
    )
    image_encoder = siglip_encoder()
    pipe = HunyuanVideo15ImageToVideoPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None,
        tokenizer_2=None,
        guider=guider or ClassifierFreeGuidance(guidance_scale=GUIDER_CFG),
        image_encoder=image_encoder,
        feature_extractor=SiglipImageProcessorPil(size={"height": 16, "width": 16}),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _embeddings(seed: int, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative embeddings of `shape`, from `seed`."""
    both = torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed))
    return both[:1], both[1:]


def _mask(tokens: int, valid: int) -> torch.Tensor:
    """An attention mask whose first `valid` of `tokens` tokens are valid."""
    return (torch.arange(tokens) < valid).float()[None]


def i2v_call(seed: int = 0, true_cfg: bool = False, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 9-frame, 64 x 64 HunyuanVideo-I2V run with embedded guidance.

    With `true_cfg`, also a negative prompt and `true_cfg_scale=TRUE_CFG` (and embedded guidance 1).
    """
    positive, negative = _embeddings(seed, TEXT_TOKENS, TEXT_DIM)
    pooled, negative_pooled = _embeddings(seed + 1, POOLED_DIM)
    kwargs = {
        "image": image(seed),
        "prompt_embeds": positive,
        "pooled_prompt_embeds": pooled,
        "prompt_attention_mask": _mask(TEXT_TOKENS, TEXT_TOKENS - 1),
        "height": 64,
        "width": 64,
        "num_frames": 9,
        "num_inference_steps": 4,
        "guidance_scale": EMBEDDED_GUIDANCE,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
    }
    if true_cfg:
        kwargs |= {
            "negative_prompt_embeds": negative,
            "negative_pooled_prompt_embeds": negative_pooled,
            "negative_prompt_attention_mask": _mask(TEXT_TOKENS, TEXT_TOKENS - 2),
            "true_cfg_scale": TRUE_CFG,
            "guidance_scale": 1.0,
        }
    return kwargs | overrides


def i2v_true_cfg_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """`i2v_call` with true CFG."""
    return i2v_call(seed, true_cfg=True, **overrides)


def hunyuan15_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 9-frame HunyuanVideo 1.5 I2V run from a 32 x 32 image (CFG from the guider)."""
    positive, negative = _embeddings(seed, TEXT_TOKENS, TEXT_DIM)
    positive_2, negative_2 = _embeddings(seed + 1, 4, BYT5_DIM)
    return {
        "image": image(seed, size=32),
        "prompt_embeds": positive,
        "prompt_embeds_mask": _mask(TEXT_TOKENS, TEXT_TOKENS - 1),
        "negative_prompt_embeds": negative,
        "negative_prompt_embeds_mask": _mask(TEXT_TOKENS, TEXT_TOKENS - 2),
        "prompt_embeds_2": positive_2,
        "prompt_embeds_mask_2": _mask(4, 3),
        "negative_prompt_embeds_2": negative_2,
        "negative_prompt_embeds_mask_2": _mask(4, 2),
        "num_frames": 9,
        "num_inference_steps": 4,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


FAMILIES = {
    "hunyuanvideo": Family("hunyuanvideo", hunyuan_i2v, i2v_call),
    "hunyuanvideo-true-cfg": Family("hunyuanvideo", hunyuan_i2v, i2v_true_cfg_call),
    "hunyuanvideo-33ch": Family("hunyuanvideo-33ch", hunyuan_i2v_33ch, i2v_call),
    "hunyuanvideo-33ch-true-cfg": Family("hunyuanvideo-33ch", hunyuan_i2v_33ch, i2v_true_cfg_call),
    "hunyuanvideo1.5": Family("hunyuanvideo1.5", hunyuan15_i2v, hunyuan15_call),
}
