"""Tiny random-weight ComfyUI video models, built from ComfyUI's own model configs, and their conditioning."""

from __future__ import annotations

from typing import Any

import comfy.model_patcher
import comfy.sample
import comfy.samplers
import comfy.supported_models
import torch

CPU = torch.device("cpu")
TEXT_DIM = 32


def patcher_of(config: Any, seed: int) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher around the model of a `comfy.supported_models` config, with seeded random float32 weights."""
    torch.manual_seed(seed)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    model.diffusion_model.to(torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return comfy.model_patcher.ModelPatcher(model, load_device=CPU, offload_device=CPU)


WAN_UNET = {"image_model": "wan2.1", "dim": 64, "ffn_dim": 64, "num_heads": 2, "num_layers": 1,
            "text_dim": TEXT_DIM, "out_dim": 16, "freq_dim": 256, "text_len": 8}  # fmt: skip


def wan21_i2v(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """Wan 2.1 I2V: 16 latent + 4 mask + 16 image channels, and the CLIP image embedding."""
    return patcher_of(comfy.supported_models.WAN21_I2V({**WAN_UNET, "model_type": "i2v", "in_dim": 36}), seed)


def wan22_a14b_expert(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """A Wan 2.2 A14B I2V expert: 16 latent + 4 mask + 16 image channels and no CLIP image embedding, which ComfyUI
    detects as model type `t2v` and loads with its text-to-video config."""
    return patcher_of(comfy.supported_models.WAN21_T2V({**WAN_UNET, "model_type": "t2v", "in_dim": 36}), seed)


def wan21_t2v(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """Wan 2.1 T2V: no image condition."""
    return patcher_of(comfy.supported_models.WAN21_T2V({**WAN_UNET, "model_type": "t2v", "in_dim": 16}), seed)


def wan22_ti2v(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """Wan 2.2 TI2V-5B: 48 latent channels, the image written into latent frame 0."""
    unet = {**WAN_UNET, "image_model": "wan2.1", "model_type": "t2v", "in_dim": 48, "out_dim": 48}
    return patcher_of(comfy.supported_models.WAN22_T2V(unet), seed)


def wan_conditioning(
    seed: int = 0, frames: int = 3, size: int = 8, last_frame: bool = False
) -> tuple[list, list, torch.Tensor]:
    """Positive and negative conditioning with a Wan I2V image (the image latent leads, zeros after), and the
    empty latent: what ComfyUI's WanImageToVideo node makes; with `last_frame`, a second image latent in the last
    frame, kept too, as WanFirstLastFrameToVideo makes."""
    generator = torch.Generator().manual_seed(seed)
    text, negative = (torch.randn(1, 8, TEXT_DIM, generator=generator) for _ in range(2))
    image = torch.zeros(1, 16, frames, size, size)
    mask = torch.ones(1, 1, frames, size, size)
    for frame in (0, frames - 1) if last_frame else (0,):
        image[:, :, frame] = torch.randn(1, 16, size, size, generator=generator)
        mask[:, :, frame] = 0.0
    extra = {"concat_latent_image": image, "concat_mask": mask}
    return [[text, dict(extra)]], [[negative, dict(extra)]], torch.zeros(1, 16, frames, size, size)


def kept_first_frame(channels: int, frames: int, size: int, mask_size: int, seed: int, extra: dict) -> tuple:
    """Conditioning, a latent holding a random image latent in frame 0, and the noise mask that keeps frame 0."""
    generator = torch.Generator().manual_seed(seed)
    text, negative = (torch.randn(1, 8, TEXT_DIM, generator=generator) for _ in range(2))
    latent = torch.zeros(1, channels, frames, size, size)
    latent[:, :, :1] = torch.randn(1, channels, 1, size, size, generator=generator)
    mask = torch.ones(1, 1, frames, mask_size, mask_size)
    mask[:, :, :1] = 0.0
    return [[text, dict(extra)]], [[negative, dict(extra)]], latent, mask


def ti2v_latent(seed: int = 0, frames: int = 3, size: int = 8) -> tuple[list, list, torch.Tensor, torch.Tensor]:
    """What ComfyUI's Wan22ImageToVideoLatent node makes: the image in latent frame 0 of 48 channels, kept."""
    return kept_first_frame(48, frames, size, size, seed, {})


def sample(model, positive, negative, latent, *, cfg=5.0, steps=4, sampler="euler", scheduler="simple",
           noise_mask=None, seed=0, start_step=None, last_step=None, force_full_denoise=False, noise=None):  # fmt: skip
    """ComfyUI's own KSampler path (`comfy.sample.sample`), as the KSampler and KSamplerAdvanced nodes call it."""
    if noise is None:
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed))
    return comfy.sample.sample(
        model, noise, steps, cfg, sampler, scheduler, positive, negative, latent, denoise=1.0,
        start_step=start_step, last_step=last_step, force_full_denoise=force_full_denoise,
        noise_mask=noise_mask, disable_pbar=True, seed=seed,
    )  # fmt: skip


def ltxv(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """LTX-Video: 128 latent channels, the image written into latent frame 0."""
    unet = {"image_model": "ltxv", "in_channels": 128, "cross_attention_dim": 64, "attention_head_dim": 32,
            "num_attention_heads": 2, "caption_channels": TEXT_DIM, "num_layers": 1}  # fmt: skip
    return patcher_of(comfy.supported_models.LTXV(unet), seed)


def ltx_latent(seed: int = 0, frames: int = 2, size: int = 4) -> tuple[list, list, torch.Tensor, torch.Tensor]:
    """What ComfyUI's LTXVImgToVideo node makes: the image in latent frame 0 of 128 channels, kept by a per-frame
    mask `[B, 1, F, 1, 1]`."""
    extra = {"frame_rate": 25, "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    return kept_first_frame(128, frames, size, 1, seed, extra)


HUNYUAN_UNET = {"image_model": "hunyuan_video", "out_channels": 16, "vec_in_dim": 768, "context_in_dim": TEXT_DIM,
                "hidden_size": 64, "mlp_ratio": 1.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
                "axes_dim": [8, 12, 12], "theta": 256, "patch_size": [1, 2, 2], "qkv_bias": True,
                "guidance_embed": True, "byt5": False, "meanflow": False, "use_cond_type_embedding": False,
                "vision_in_dim": None, "meanflow_sum": False}  # fmt: skip
"""A tiny HunyuanVideo transformer: the keys ComfyUI's model detection reads from a checkpoint."""


def hunyuan_video(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """HunyuanVideo with 16 input channels: text-to-video, and the I2V token-replace model (`HunyuanImageToVideo`
    v2 (replace), or its `ref_latent` with custom)."""
    return patcher_of(comfy.supported_models.HunyuanVideo({**HUNYUAN_UNET, "in_channels": 16}), seed)


def hunyuan_video_i2v(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """HunyuanVideo I2V 33-channel: 16 latent + 16 image-latent + 1 mask channel."""
    return patcher_of(comfy.supported_models.HunyuanVideoI2V({**HUNYUAN_UNET, "in_channels": 33}), seed)


def hunyuan_video_skyreels(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """SkyReels V1 Hunyuan I2V: 16 latent + 16 image-latent channels."""
    return patcher_of(comfy.supported_models.HunyuanVideoSkyreelsI2V({**HUNYUAN_UNET, "in_channels": 32}), seed)


def hunyuan_video15(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """HunyuanVideo 1.5: 32 latent + 32 image-latent + 1 mask channel, patch 1, a vision embedding."""
    unet = {**HUNYUAN_UNET, "in_channels": 65, "out_channels": 32, "patch_size": [1, 1, 1], "vec_in_dim": None,
            "vision_in_dim": 16, "use_cond_type_embedding": True, "meanflow_sum": True,
            "guidance_embed": False}  # fmt: skip
    return patcher_of(comfy.supported_models.HunyuanVideo15(unet), seed)


COGVIDEOX_UNET = {"image_model": "cogvideox", "num_attention_heads": 2, "attention_head_dim": 32, "time_embed_dim": 32,
                  "num_layers": 1, "patch_size": 2, "text_embed_dim": TEXT_DIM,
                  "use_learned_positional_embeddings": False, "use_rotary_positional_embeddings": True}  # fmt: skip


def cogvideox_i2v(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """CogVideoX I2V: 16 latent + 16 image-latent channels."""
    return patcher_of(comfy.supported_models.CogVideoX_I2V({**COGVIDEOX_UNET, "in_channels": 32}), seed)


def cogvideox_t2v(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """CogVideoX text-to-video: 16 channels."""
    return patcher_of(comfy.supported_models.CogVideoX_T2V({**COGVIDEOX_UNET, "in_channels": 16}), seed)


def ltxav(seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """LTX-2: 128 video and 128 (8 x 16 frequency bins) audio latent channels, its text connectors shrunk."""
    unet = {"image_model": "ltxav", "in_channels": 128, "audio_in_channels": 128, "cross_attention_dim": 64,
            "audio_cross_attention_dim": 32, "attention_head_dim": 32, "audio_attention_head_dim": 16,
            "num_attention_heads": 2, "audio_num_attention_heads": 2, "caption_channels": TEXT_DIM, "num_layers": 1,
            "connector_attention_head_dim": 16, "connector_num_attention_heads": 2,
            "connector_num_layers": 1}  # fmt: skip
    return patcher_of(comfy.supported_models.LTXAV(unet), seed)
