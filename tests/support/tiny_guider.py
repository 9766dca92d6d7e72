"""Tiny pipelines driven by a diffusers guider: the modular Wan 2.1 / 2.2 I2V and HunyuanVideo 1.5 I2V denoise blocks.

Each is the modular pipeline of the family's core denoise block (`init_pipeline()` on the block, components set with
`update_components`), taking the encoded condition as an input, so nothing needs a text encoder or a hub download.
The standard `HunyuanVideo15ImageToVideoPipeline` comes from `tiny_hunyuan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.guiders import BaseGuidance, ClassifierFreeGuidance
from diffusers.modular_pipelines.hunyuan_video1_5.modular_blocks_hunyuan_video1_5 import (
    HunyuanVideo15Image2VideoCoreDenoiseStep,
)
from diffusers.modular_pipelines.wan.modular_blocks_wan22_i2v import Wan22Image2VideoCoreDenoiseStep
from diffusers.modular_pipelines.wan.modular_blocks_wan_i2v import WanImage2VideoCoreDenoiseStep
from diffusers.video_processor import VideoProcessor

from . import tiny_hunyuan
from .tiny_wan import TEXT_DIM, _transformer

CFG = 5.0
CFG_2 = 3.0


@dataclass(frozen=True)
class GuidedFamily:
    """A tiny pipeline that takes guiders, and how to run it.

    Attributes:
        name: The test id.
        make: Builds the pipeline with the given guiders (`guider`, and `guider_2` where it has one).
        run: Runs the pipeline (4 steps, fixed seed) and returns its latents.
        denoisers: The attributes holding the denoisers, in the order the guiders drive them.
        guiders: The attributes holding the guiders, one per denoiser.
        condition: The channels of `hidden_states` holding the image condition that ALG filters.
    """

    name: str
    make: Any
    run: Any
    denoisers: tuple[str, ...]
    guiders: tuple[str, ...]
    condition: slice


def _wan_components(guider: BaseGuidance | None) -> dict[str, Any]:
    return {
        "transformer": _transformer(36, image_dim=4),
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "guider": guider or ClassifierFreeGuidance(guidance_scale=CFG),
    }


def modular_wan21(guider: BaseGuidance | None = None) -> Any:
    """The modular Wan 2.1 I2V denoise block, with a 36-channel transformer (16 latent + 4 mask + 16 condition)."""
    torch.manual_seed(0)
    pipe = WanImage2VideoCoreDenoiseStep().init_pipeline()
    pipe.update_components(**_wan_components(guider))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def modular_wan22(guider: BaseGuidance | None = None, guider_2: BaseGuidance | None = None) -> Any:
    """The modular Wan 2.2 A14B I2V denoise block: two experts, each with its guider; the second takes steps 2 and 3."""
    torch.manual_seed(0)
    pipe = Wan22Image2VideoCoreDenoiseStep().init_pipeline()
    components = _wan_components(guider)
    components["transformer"] = _transformer(36, image_dim=None)
    pipe.update_components(
        **components,
        transformer_2=_transformer(36, image_dim=None),
        guider_2=guider_2 or ClassifierFreeGuidance(guidance_scale=CFG_2),
    )
    pipe.register_to_config(boundary_ratio=0.7)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def modular_hunyuan15(guider: BaseGuidance | None = None) -> Any:
    """The modular HunyuanVideo 1.5 I2V denoise block, with the standard tiny pipeline's transformer."""
    standard = tiny_hunyuan.hunyuan15_i2v()
    pipe = HunyuanVideo15Image2VideoCoreDenoiseStep().init_pipeline()
    pipe.update_components(
        transformer=standard.transformer,
        scheduler=standard.scheduler,
        video_processor=VideoProcessor(vae_scale_factor=4),
        guider=guider or ClassifierFreeGuidance(guidance_scale=CFG),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _inputs(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_wan21(pipe: Any, seed: int = 0, num_inference_steps: int = 4) -> torch.Tensor:
    """4 steps, 9 frames (3 latent frames) of 8 x 8 latents, with a random condition and image embeddings."""
    return _run_wan(pipe, seed, num_inference_steps, image_embeds=True)


def run_wan22(pipe: Any, seed: int = 0, num_inference_steps: int = 4) -> torch.Tensor:
    """As `run_wan21`, without image embeddings (Wan 2.2 A14B has no image encoder)."""
    return _run_wan(pipe, seed, num_inference_steps, image_embeds=False)


def _run_wan(pipe: Any, seed: int, num_inference_steps: int, *, image_embeds: bool) -> torch.Tensor:
    generator = _inputs(seed)
    inputs = {
        "prompt_embeds": torch.randn(1, 8, TEXT_DIM, generator=generator),
        "negative_prompt_embeds": torch.randn(1, 8, TEXT_DIM, generator=generator),
        "image_condition_latents": torch.randn(1, 20, 3, 8, 8, generator=generator),
    }
    if image_embeds:
        inputs["image_embeds"] = torch.randn(1, 4, 4, generator=generator)
    return pipe(
        **inputs,
        height=64,
        width=64,
        num_frames=9,
        num_inference_steps=num_inference_steps,
        generator=_inputs(seed + 1),
        output="latents",
    )


def run_hunyuan15(pipe: Any, seed: int = 0, num_inference_steps: int = 4) -> torch.Tensor:
    """4 steps, 3 latent frames of 8 x 8 (the modular pipeline's default VAE factors, 16 in space and 4 in time,
    without a VAE; the latents given, since its default latent channels are the real model's) from a random image
    latent."""
    call = tiny_hunyuan.hunyuan15_call(seed)
    generator = _inputs(seed)
    return pipe(
        **{key: value for key, value in call.items() if "embeds" in key},
        image_latents=torch.randn(1, tiny_hunyuan.LATENT_CHANNELS, 1, 8, 8, generator=generator),
        latents=torch.randn(1, tiny_hunyuan.LATENT_CHANNELS, 3, 8, 8, generator=generator),
        height=128,
        width=128,
        num_frames=9,
        num_inference_steps=num_inference_steps,
        generator=_inputs(seed + 1),
        output="latents",
    )


def run_standard_hunyuan15(pipe: Any, seed: int = 0, num_inference_steps: int = 4) -> torch.Tensor:
    """The standard pipeline's tiny run (`tiny_hunyuan.hunyuan15_call`)."""
    return pipe(**tiny_hunyuan.hunyuan15_call(seed, num_inference_steps=num_inference_steps)).frames


_WAN_CONDITION = slice(16, 36)
_HUNYUAN_CONDITION = slice(tiny_hunyuan.LATENT_CHANNELS, 2 * tiny_hunyuan.LATENT_CHANNELS)

FAMILIES = {
    "modular-wan2.1": GuidedFamily(
        "modular-wan2.1", modular_wan21, run_wan21, ("transformer",), ("guider",), _WAN_CONDITION
    ),
    "modular-wan2.2": GuidedFamily(
        "modular-wan2.2",
        modular_wan22,
        run_wan22,
        ("transformer", "transformer_2"),
        ("guider", "guider_2"),
        _WAN_CONDITION,
    ),
    "modular-hunyuanvideo1.5": GuidedFamily(
        "modular-hunyuanvideo1.5", modular_hunyuan15, run_hunyuan15, ("transformer",), ("guider",), _HUNYUAN_CONDITION
    ),
    "hunyuanvideo1.5": GuidedFamily(
        "hunyuanvideo1.5",
        tiny_hunyuan.hunyuan15_i2v,
        run_standard_hunyuan15,
        ("transformer",),
        ("guider",),
        _HUNYUAN_CONDITION,
    ),
}
