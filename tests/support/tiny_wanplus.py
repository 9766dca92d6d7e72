"""Tiny random-weight Wan VACE and Wan Animate pipelines, built from configs in code (nothing is downloaded)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    WanAnimatePipeline,
    WanAnimateTransformer3DModel,
    WanVACEPipeline,
    WanVACETransformer3DModel,
)
from PIL import Image

from .families import Family
from .tiny_wan import TEXT_DIM, _image_encoder, _vae, image

SIZE = 32
FRAMES = 9
WAN_BLOCKS = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "out_channels": 16,
    "text_dim": TEXT_DIM,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
}


def vace(two_experts: bool = False) -> WanVACEPipeline:
    """Wan VACE: 16 latent channels, VACE blocks at layer 0 reading 16 + 16 latent + 64 mask channels.

    With `two_experts`, a second expert takes the low-noise steps (Wan 2.2 VACE-Fun): with 4 steps and
    `boundary_ratio=0.7`, steps 2 and 3.
    """
    torch.manual_seed(0)

    def transformer() -> WanVACETransformer3DModel:
        return WanVACETransformer3DModel(**WAN_BLOCKS, in_channels=16, vace_layers=[0], vace_in_channels=96)

    experts = {"transformer_2": transformer(), "boundary_ratio": 0.7} if two_experts else {}
    pipe = WanVACEPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_vae(),
        transformer=transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        **experts,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def vace_two_experts() -> WanVACEPipeline:
    """`vace` with two experts."""
    return vace(two_experts=True)


def animate() -> WanAnimatePipeline:
    """Wan Animate: a 36-channel transformer (16 latent + 4 mask + 16 reference), tiny motion and face encoders."""
    torch.manual_seed(0)
    transformer = WanAnimateTransformer3DModel(
        **WAN_BLOCKS,
        in_channels=36,
        image_dim=4,
        motion_encoder_channel_sizes={"16": 8, "8": 8, "4": 8},
        motion_encoder_size=16,
        motion_style_dim=8,
        motion_dim=4,
        motion_encoder_dim=8,
        face_encoder_hidden_dim=16,
        face_encoder_num_heads=2,
        inject_face_latents_blocks=2,
        motion_encoder_batch_size=4,
    )
    encoder, processor = _image_encoder()
    pipe = WanAnimatePipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_vae(),
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_encoder=encoder,
        image_processor=processor,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _embeddings(seed: int) -> dict[str, torch.Tensor]:
    embeds = torch.randn(2, 8, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    return {"prompt_embeds": embeds[:1], "negative_prompt_embeds": embeds[1:]}


def i2v_video(seed: int = 0, frames: int = FRAMES) -> tuple[list[Image.Image], list[Image.Image]]:
    """VACE image-to-video: the image as the first frame, kept by the mask; gray frames to generate after it."""
    gray = Image.new("RGB", (SIZE, SIZE), (128, 128, 128))
    keep, generate = Image.new("L", (SIZE, SIZE), 0), Image.new("L", (SIZE, SIZE), 255)
    return [image(seed, SIZE)] + [gray] * (frames - 1), [keep] + [generate] * (frames - 1)


def vace_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """A 4-step, 9-frame, 32 x 32 VACE image-to-video run with a reference image."""
    video, mask = i2v_video(seed)
    return {
        "video": video,
        "mask": mask,
        "reference_images": [image(seed + 1, SIZE)],
        **_embeddings(seed),
        "height": SIZE,
        "width": SIZE,
        "num_frames": FRAMES,
        "num_inference_steps": 4,
        "guidance_scale": 5.0,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


def vace_two_experts_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """`vace_call` with a second scale for the second expert."""
    return vace_call(seed, **{"guidance_scale_2": 3.0, **overrides})


def animate_call(seed: int = 0, frames: int = FRAMES, **overrides: Any) -> dict[str, Any]:
    """A 4-step Wan Animate run of one 9-frame segment (a 9-frame pose video), 32 x 32, with CFG 5."""
    return {
        "image": image(seed, SIZE),
        "pose_video": [image(seed + 10 + i, SIZE) for i in range(frames)],
        "face_video": [image(seed + 30 + i, 16) for i in range(frames)],
        **_embeddings(seed),
        "height": SIZE,
        "width": SIZE,
        "segment_frame_length": FRAMES,
        "num_inference_steps": 4,
        "guidance_scale": 5.0,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


FAMILIES = {
    "wan-vace": Family("wan-vace", vace, vace_call),
    "wan-vace-two-experts": Family(
        "wan-vace", vace_two_experts, vace_two_experts_call, denoisers=("transformer", "transformer_2")
    ),
    "wan-animate": Family("wan-animate", animate, animate_call),
}
