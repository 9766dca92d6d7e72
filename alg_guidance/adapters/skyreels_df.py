"""The adapter for SkyReels-V2 diffusion-forcing image-to-video (`SkyReelsV2DiffusionForcingImageToVideoPipeline`).

Diffusion forcing gives every latent frame its own timestep. The image latent is written into latent frame 0 (a
prefix frame) and kept clean: its timestep is 0 in every row of the pipeline's step matrix and the pipeline never
steps it; with `last_image`, that image's latent is appended as the last latent frame, kept clean the same way.
The transformer sees these frames in `hidden_states` (`[B, C, F, H, W]`, 16 channels, no concatenated condition);
ALG low-passes them there, as Wan 2.2 TI2V-5B's first frame. CFG is sequential, under the cache contexts "cond"
and "uncond".

Two things set it apart from the other pipelines:

- It steps one copy of its scheduler per latent frame, never `pipeline.scheduler` itself, and runs one denoiser
  step per row of its step matrix (as many as `num_inference_steps` when all frames move together, `ar_step=0`;
  more when asynchronous frames are staggered). ALG counts the rows as the run's steps (`pipeline.num_timesteps`),
  so progress is `row / (rows - 1)`; a row's noise level is that of the leading generated frame, which follows
  the scheduler's timesteps.
- The SkyReels-V2 transformer takes `fps` as a Python list with one entry per sample, which cannot be stacked with
  other branches, so ALG's extra branch always runs as a call of its own.

Long videos (`overlap_history` with `num_frames > base_num_frames`) are sampled in iterations whose prefix frames,
after the first, are the video generated so far rather than the image; ALG refuses them rather than low-pass
generated frames.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ALGError
from .base import Adapter, Captures
from .layouts import ConditionLayout, FirstFrame
from .wan import WAN_BATCHED_INPUTS

DIFFUSION_FORCING = (
    "its latent frames are denoised at timesteps of their own (the image-latent prefix held clean at timestep 0, "
    "asynchronous frames staggered), while k-diffusion's samplers step the whole latent at one sigma"
)
"""Why k-diffusion cannot sample diffusion forcing."""


@dataclass(frozen=True)
class FirstAndLastFrames:
    """The condition is the first and the last frame of a latent video: an image latent at each end.

    `get` returns them as a 2-frame tensor (a copy, not a view), `put` writes them back in place of both.

    Attributes:
        input: The name of the denoiser input holding the latent video.
        frame_dim: The frame dimension.

    Examples:
        >>> layout = FirstAndLastFrames("x", frame_dim=1)
        >>> layout.get({"x": torch.arange(4.0)[None]})
        tensor([[0., 3.]])
        >>> layout.put({"x": torch.arange(4.0)[None]}, torch.tensor([[9.0, 8.0]]))["x"]
        tensor([[9., 1., 2., 8.]])
    """

    input: str
    frame_dim: int

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Frames 0 and -1, concatenated along the frame dimension."""
        x = inputs[self.input]
        return torch.cat(
            [x.narrow(self.frame_dim, 0, 1), x.narrow(self.frame_dim, x.shape[self.frame_dim] - 1, 1)], self.frame_dim
        )

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with frames 0 and -1 replaced by the condition's two frames."""
        x = inputs[self.input]
        first, last = condition.to(x.dtype).split(1, dim=self.frame_dim)
        middle = x.narrow(self.frame_dim, 1, x.shape[self.frame_dim] - 2)
        return {**inputs, self.input: torch.cat([first, middle, last], dim=self.frame_dim)}


class SkyReelsV2DF(Adapter):
    """SkyReels-V2 diffusion forcing I2V: the image latent is the clean prefix frame (and `last_image`'s the last)."""

    name = "skyreels-v2-df"
    pipelines = ("SkyReelsV2DiffusionForcingImageToVideoPipeline",)
    guidance = "sequential"
    contexts = ("cond", "uncond")
    batched_inputs = WAN_BATCHED_INPUTS
    captures = "prepare_latents"
    pixel_space = True
    preset = "skyreels-v2"
    k_diffusion_refusal = DIFFUSION_FORCING
    steps_scheduler = False
    batches_branches = False

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """Latent frame 0 of `hidden_states`, and the last latent frame too when the run has a `last_image`.

        Raises:
            ALGError: The run generates a long video in several iterations.
        """
        arguments = self.captured(captures).arguments
        if arguments.get("long_video_iter") is not None:
            raise ALGError(
                f"the {self.name} adapter serves videos sampled in one iteration: this run generates a long video "
                "(overlap_history with num_frames > base_num_frames), whose later iterations are conditioned on "
                "generated frames, not on the image. Generate at most base_num_frames frames, or disable ALG"
            )
        if arguments.get("last_image") is not None:
            return FirstAndLastFrames("hidden_states", frame_dim=2)
        return FirstFrame("hidden_states", frame_dim=2)

    def num_steps(self, pipeline: Any) -> int:
        """The rows of the run's step matrix, which the pipeline stores as `num_timesteps`."""
        return int(pipeline.num_timesteps)

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Run the pipeline's own `prepare_latents` on the low-passed image(s), reusing the run's latents.

        `prepare_latents` encodes with the VAE's mode and the pipeline's normalization and, given the run's latents,
        draws no noise. Its condition holds the first image's latents, then `last_image`'s; they go where the
        pipeline puts them, frame 0 and (with `last_image`) the last frame.
        """
        capture = self.captured(captures)
        arguments = dict(capture.arguments)
        for name in ("image", "last_image"):
            if arguments.get(name) is not None:
                arguments[name] = low_pass(arguments[name])
        arguments["latents"] = capture.result[0]
        condition = type(pipeline).prepare_latents(pipeline, **arguments)[2]
        rows = condition.shape[0]
        first = condition[: (rows + 1) // 2]
        if arguments.get("last_image") is None:
            return first
        return torch.cat([first, condition[rows // 2 :]], dim=2)


ADAPTERS: tuple[type[Adapter], ...] = (SkyReelsV2DF,)
