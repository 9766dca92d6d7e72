"""Adapters for the Wan pipelines that take their image through other inputs: Wan VACE and Wan Animate.

Both run CFG as Wan 2.1 does: a `"cond"` call, then an `"uncond"` call, each under its cache context.

- `WanVACEPipeline` (Wan 2.1 VACE, Wan 2.2 VACE-Fun with two experts) hands the transformer its conditions as
  a separate input, `control_hidden_states`: `[inactive, reactive, mask]` along the channels, where `inactive`
  and `reactive` are the VAE latents of the conditioning video outside and inside the mask (`z` channels each)
  and the mask is pixel-unshuffled into `8 * 8` channels. Reference images become extra latent frames in front of
  the video (their latent in the `inactive` channels, zeros in the others). Image-to-video with VACE passes a
  video whose first frame is the image and a mask that keeps it: the image latent sits in the `inactive`
  channels of the first video frame. ALG low-passes the `2 * z` latent channels at every frame, so reference
  images, the first-frame image and any other conditioning frame alike; the mask channels are left alone.
- `WanAnimatePipeline` (Wan 2.2 Animate) concatenates `[latents, mask, reference]` along the channels as Wan 2.1
  does; the reference is the character image's latent in the first latent frame, followed by the previous
  segment's frames (or the background video with `mode="replace"`). ALG low-passes the character image's
  latent, the first frame of the `z` reference-latent channels; pose and face videos and the previous segment's
  frames are left alone. Each segment of a long video samples with its own schedule, so every segment is
  guided.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .base import Adapter, Captures
from .layouts import ChannelSlice, ConditionLayout, _replace_range
from .wan import WAN_BATCHED_INPUTS, _WanFamily

VACE_BATCHED_INPUTS = ("hidden_states", "timestep", "encoder_hidden_states", "control_hidden_states")
ANIMATE_BATCHED_INPUTS = (*WAN_BATCHED_INPUTS, "pose_hidden_states", "face_pixel_values")
SEPARATE_CONDITION = (
    "its condition is a separate transformer input ({input}), which the k-diffusion denoisers of from_pipeline "
    "do not build"
)


@dataclass(frozen=True)
class FirstFrameChannels:
    """The condition is a run of channels of the first latent frame: `x[:, start:stop, :1]` on `[B, C, F, H, W]`.

    Wan Animate: `FirstFrameChannels("hidden_states", start=20, stop=36)`, the character image's latent.

    Attributes:
        input: The name of the denoiser input.
        start: The first condition channel.
        stop: One past the last condition channel.
    """

    input: str
    start: int
    stop: int

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The channels of the first frame, a view of the input."""
        return inputs[self.input].narrow(1, self.start, self.stop - self.start).narrow(2, 0, 1)

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with those channels of the first frame replaced."""
        x = inputs[self.input]
        frame = _replace_range(x.narrow(2, 0, 1), 1, self.start, condition)
        return {**inputs, self.input: _replace_range(x, 2, 0, frame)}


class WanVACE(_WanFamily):
    """Wan VACE (`WanVACEPipeline`): the conditioning latents in `control_hidden_states`, on one or two experts.

    The run's conditioning latents are read from `prepare_video_latents`, in the VAE's dtype, before the pipeline
    casts them for the transformer; pixel space runs that same method on the low-passed video and reference images.
    """

    name = "wan-vace"
    pipelines = ("WanVACEPipeline",)
    batched_inputs = VACE_BATCHED_INPUTS
    captures = "prepare_video_latents"
    preset = "paper"
    k_diffusion_refusal = SEPARATE_CONDITION.format(input="control_hidden_states")

    def refusal(self, pipeline: object) -> str | None:
        """A `WanVACEPipeline` with a transformer (or a second expert)."""
        return Adapter.refusal(self, pipeline)

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The `2 * z_dim` latent channels of `control_hidden_states` at every frame; the mask channels stay."""
        return ChannelSlice("control_hidden_states", dim=1, start=0, stop=2 * pipeline.vae.config.z_dim)

    def prepared_condition(self, pipeline: Any, captures: Captures) -> torch.Tensor | None:
        """The latents `prepare_video_latents` returned, before the pipeline cast them to the transformer's dtype."""
        capture = captures.get(self.captures)
        return None if capture is None else capture.result

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Run the pipeline's own `prepare_video_latents` on the low-passed video and reference images.

        It encodes with the VAE's mode (`sample_mode="argmax"`) and the pipeline's normalization, so the result is
        deterministic. The mask is the run's own.
        """
        arguments = dict(self.captured(captures).arguments)
        arguments["video"] = low_pass(arguments["video"])
        if arguments.get("reference_images") is not None:
            arguments["reference_images"] = [
                [low_pass(image) for image in images] for images in arguments["reference_images"]
            ]
        return type(pipeline).prepare_video_latents(pipeline, **arguments)


class WanAnimate(_WanFamily):
    """Wan 2.2 Animate (`WanAnimatePipeline`): the character image's latent in the first frame of the condition.

    The run's reference latent (4 mask + `z` latent channels, one frame) is read from
    `prepare_reference_image_latents`, in float32; pixel space runs that same method on the low-passed image.
    """

    name = "wan-animate"
    pipelines = ("WanAnimatePipeline",)
    batched_inputs = ANIMATE_BATCHED_INPUTS
    captures = "prepare_reference_image_latents"
    preset = "paper"
    k_diffusion_refusal = (
        "it samples a long video in segments, each conditioned on the last frames of the one before, decoded in "
        "between, and its transformer also takes pose and face videos"
    )

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The `z_dim` reference-latent channels (after the latents and 4 mask channels) of the first latent frame."""
        z_dim = pipeline.vae.config.z_dim
        return FirstFrameChannels("hidden_states", start=z_dim + 4, stop=2 * z_dim + 4)

    def condition_of(self, prepared: torch.Tensor) -> torch.Tensor:
        """The latent channels of the reference latent, after its 4 mask channels."""
        return prepared[:, 4:]

    def prepared_condition(self, pipeline: Any, captures: Captures) -> torch.Tensor | None:
        """The float32 reference latent `prepare_reference_image_latents` returned, without its mask channels."""
        capture = captures.get(self.captures)
        return None if capture is None else self.condition_of(capture.result)

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Run the pipeline's own `prepare_reference_image_latents` on the low-passed character image.

        It encodes with the VAE's mode (`sample_mode="argmax"`, its default) and the pipeline's normalization.
        """
        arguments = dict(self.captured(captures).arguments)
        arguments["image"] = low_pass(arguments["image"])
        return self.condition_of(type(pipeline).prepare_reference_image_latents(pipeline, **arguments))


ADAPTERS: tuple[type[Adapter], ...] = (WanVACE, WanAnimate)
