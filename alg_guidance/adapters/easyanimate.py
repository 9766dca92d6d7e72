"""The adapter for EasyAnimate's inpainting pipeline used for image-to-video (`EasyAnimateInpaintPipeline`).

Image-to-video with EasyAnimate passes a video whose first frame is the image and a mask that keeps that frame
(`get_image_to_video_latent` in the pipeline's module makes both). The pipeline encodes the masked video and the
mask and hands them to the transformer as a separate input, `inpaint_latents = cat([mask_latents,
masked_video_latents], dim=1)` on `[B, C, F, H, W]`, and runs CFG in one call on `[uncond, cond]` (no cache
context; `guidance_rescale` after the combination). ALG low-passes the masked-video latent channels at every
frame; the mask channels are left alone.

Transformers whose input takes the latent channels only (no `inpaint_latents`) get the image pasted into the
latents after every step instead; they are refused.
"""

from __future__ import annotations

from typing import Any

from .base import Adapter, Captures
from .layouts import ChannelSlice, ConditionLayout

EASYANIMATE_BATCHED_INPUTS = (
    "hidden_states",
    "timestep",
    "encoder_hidden_states",
    "encoder_hidden_states_t5",
    "inpaint_latents",
)


class EasyAnimateI2V(Adapter):
    """EasyAnimate V5.1 inpaint, image-to-video: batched CFG, the masked-video latents in `inpaint_latents`.

    Latent space only: with `add_noise_in_inpaint_model` (the checkpoints' setting) the pipeline adds random noise
    to the masked video before encoding it, which a re-encoded low-passed image could not reproduce.
    """

    name = "easyanimate-i2v"
    pipelines = ("EasyAnimateInpaintPipeline",)
    guidance = "batched"
    contexts = None
    batched_inputs = EASYANIMATE_BATCHED_INPUTS
    preset = "paper"
    k_diffusion_refusal = (
        "its condition is a separate transformer input (inpaint_latents), which the k-diffusion denoisers of "
        "from_pipeline do not build"
    )
    float32_predictions = False  # it steps its latents in the prediction's dtype and feeds them uncast

    def refusal(self, pipeline: object) -> str | None:
        """Also refuses a transformer that takes no `inpaint_latents` (its input is the latent channels alone)."""
        refusal = super().refusal(pipeline)
        if refusal is not None:
            return refusal
        in_channels, latent_channels = pipeline.transformer.config.in_channels, pipeline.vae.config.latent_channels
        if in_channels <= latent_channels:
            return (
                f"its transformer takes {in_channels} input channels, the latent's {latent_channels} alone: the "
                "pipeline pastes the image latent into the latents after every step, with no condition input to "
                "low-pass"
            )
        return None

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The masked-video latent channels of `inpaint_latents`, after its mask channels."""
        in_channels, latent_channels = pipeline.transformer.config.in_channels, pipeline.vae.config.latent_channels
        return ChannelSlice("inpaint_latents", dim=1, start=in_channels - 2 * latent_channels)


ADAPTERS: tuple[type[Adapter], ...] = (EasyAnimateI2V,)
