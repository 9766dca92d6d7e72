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


def wan_conditioning(seed: int = 0, frames: int = 3, size: int = 8) -> tuple[list, list, torch.Tensor]:
    """Positive and negative conditioning with a Wan I2V image (the image latent leads, zeros after), and the
    empty latent: what ComfyUI's WanImageToVideo node makes."""
    generator = torch.Generator().manual_seed(seed)
    text, negative = (torch.randn(1, 8, TEXT_DIM, generator=generator) for _ in range(2))
    image = torch.zeros(1, 16, frames, size, size)
    image[:, :, :1] = torch.randn(1, 16, 1, size, size, generator=generator)
    mask = torch.ones(1, 1, frames, size, size)
    mask[:, :, :1] = 0.0
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
