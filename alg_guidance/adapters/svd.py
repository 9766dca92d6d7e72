"""The adapter for Stable Video Diffusion (`StableVideoDiffusionPipeline`), conditioned on the image alone.

The pipeline adds a little noise to the image (`noise_aug_strength`), encodes it with the VAE's mode and
concatenates that one image latent to every frame of the noisy latents: `cat([latents, image_latents], dim=2)`
on frame-major `[B, F, C, H, W]`. Its UNet runs CFG batched, one call on `[uncond, cond]`, and the pipeline
combines the halves with a per-frame scale that grows from `min_guidance_scale` (first frame) to
`max_guidance_scale` (last frame).

The unconditional half carries no image: its image latent and its CLIP image embedding are zeros. A linear
filter maps zero to zero, so `u_lp = u_orig` exactly, and ALG is CFG with a low-passed conditional image: two
evaluations (one call of batch two) per step, no third branch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .base import Adapter, Captures
from .layouts import ChannelSlice, ConditionLayout


@dataclass(frozen=True)
class RepeatedImageLatent:
    """A condition repeated identically over the frames of a frame-major input `[B, F, C, H, W]`.

    `get` reads the condition channels of the first frame, `[B, 1, C, H, W]`; `put` writes a condition of that
    shape into every frame. The image is therefore filtered (and, in pixel space, encoded) once, not once per
    frame.

    Attributes:
        channels: Where the condition channels sit in each frame.
    """

    channels: ChannelSlice

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The first frame's condition channels, a view of the input."""
        return self.channels.get(inputs).narrow(1, 0, 1)

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with `condition` in the condition channels of every frame."""
        frames = inputs[self.channels.input].shape[1]
        return self.channels.put(inputs, condition.expand(-1, frames, *condition.shape[2:]))


@contextlib.contextmanager
def _encoding_precision(vae: torch.nn.Module) -> Iterator[None]:
    """Encode in float32 with a float16 VAE whose config asks for it (`force_upcast`), as the pipeline does."""
    upcast = vae.dtype == torch.float16 and bool(vae.config.force_upcast)
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(dtype=torch.float16)


class StableVideoDiffusion(Adapter):
    """Stable Video Diffusion image-to-video (SVD and SVD-XT): batched CFG with a zero unconditional image.

    The CLIP image embedding stays unfiltered, as in the reference. `uses_cfg` reads the
    pipeline's `do_classifier_free_guidance`, which compares the per-frame scale tensor with 1: one read from
    the device per run.

    Pixel space captures `_encode_vae_image`, so the image it filters is the noise-augmented one the pipeline
    encodes (the same image whose latent latent-space ALG filters); the run's own noise is reused, no new noise
    is drawn.
    """

    name = "svd"
    pipelines = ("StableVideoDiffusionPipeline",)
    guidance = "batched"
    contexts = None
    batched_inputs = ("sample", "encoder_hidden_states", "added_time_ids")
    uncond_sees_image = False
    captures = "_encode_vae_image"
    pixel_space = True
    denoiser_names = ("unet",)
    preset = "svd"
    k_diffusion_refusal = (
        "its unconditional branch carries no image (zero latents and embeddings), while the guided denoiser gives "
        "both branches one image condition"
    )

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The image-latent channels after the latent channels of `sample`, shared by every frame."""
        latent_channels = pipeline.unet.config.in_channels // 2
        return RepeatedImageLatent(ChannelSlice("sample", dim=2, start=latent_channels))

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Encode the low-passed noise-augmented image with the pipeline's own `_encode_vae_image`.

        That method encodes with the VAE's mode (no sampling) and repeats the latent per video; asked for no
        CFG copy, it returns the pipeline's own batch. A float16 VAE encodes in float32 when its config says
        `force_upcast`, as in the pipeline. The result is one frame, `[B, 1, C, H, W]`, as `layout().get` reads.
        """
        arguments = dict(self.captured(captures).arguments)
        arguments["image"] = low_pass(arguments["image"])
        arguments["do_classifier_free_guidance"] = False
        with _encoding_precision(pipeline.vae):
            latents = type(pipeline)._encode_vae_image(pipeline, **arguments)
        return latents.unsqueeze(1)


ADAPTERS: tuple[type[Adapter], ...] = (StableVideoDiffusion,)
