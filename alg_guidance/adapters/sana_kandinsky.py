"""Adapters for Sana-Video image-to-video (`SanaImageToVideoPipeline`) and Kandinsky 5 I2V (`Kandinsky5I2VPipeline`).

Both write the image latent into latent frame 0 and keep that frame out of denoising: the scheduler steps frames
`1:` only, so frame 0 stays the image latent at every step.

- Sana-Video I2V works on `[B, C, F, H, W]`, gives frame 0 timestep 0 (a per-token timestep) and calls its
  transformer once per step on `[uncond, cond]` (batched CFG, no cache context). Its `prepare_latents` encodes
  the image with the VAE's mode, so pixel space reruns it on the low-passed image.
- Kandinsky 5 I2V works channels-last, `[B, F, H, W, C']`: the first `C` channels are the latent (frame 0 the
  image latent); with `visual_cond` come `C` zero channels and a one-channel frame mask, which carry no image.
  It calls its transformer for the prompt, then for the negative prompt (sequential CFG, no cache context: the
  two calls are told apart by their order within a scheduler step). Its `prepare_latents` samples the VAE
  posterior with the run's generator, so the adapter filters in latent space only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .base import Adapter, Captures
from .layouts import ConditionLayout, FirstFrame, _replace_range
from .wan import FRAME_REPLACED


class SanaVideoI2V(Adapter):
    """Sana-Video image-to-video: batched CFG, the image latent in latent frame 0 (timestep 0 there)."""

    name = "sana-video-i2v"
    pipelines = ("SanaImageToVideoPipeline",)
    guidance = "batched"
    contexts = None
    batched_inputs = ("hidden_states", "encoder_hidden_states", "encoder_attention_mask", "timestep")
    captures = "prepare_latents"
    pixel_space = True
    preset = "paper"
    k_diffusion_refusal = FRAME_REPLACED

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """Latent frame 0 of `hidden_states` `[B, C, F, H, W]`."""
        return FirstFrame("hidden_states", frame_dim=2)

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Rerun the pipeline's own `prepare_latents` (VAE mode, its normalization) on the low-passed image.

        The run's latents are passed as a copy: `prepare_latents` writes the image latent into the latents it is
        given, and the run's own must keep the original image latent.
        """
        capture = self.captured(captures)
        arguments = dict(capture.arguments)
        arguments["image"] = low_pass(arguments["image"])
        arguments["latents"] = capture.result.clone()
        return type(pipeline).prepare_latents(pipeline, **arguments)[:, :, :1]


@dataclass(frozen=True)
class ChannelsLastFirstFrame:
    """The condition is the first `channels` channels of frame 0 of a channels-last video `[B, F, H, W, C']`.

    `get` returns them as `[B, channels, H, W]` (height and width last, for the filters).

    Attributes:
        input: The name of the denoiser input holding the video.
        channels: The number of latent channels, the first of the last dimension.
    """

    input: str
    channels: int

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Frame 0's latent channels as `[B, C, H, W]`, a view of the input."""
        return inputs[self.input][:, 0, :, :, : self.channels].permute(0, 3, 1, 2)

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with frame 0's latent channels replaced by `condition` `[B, C, H, W]`."""
        video = inputs[self.input]
        frame = _replace_range(video[:, :1], -1, 0, condition.permute(0, 2, 3, 1).unsqueeze(1))
        return {**inputs, self.input: _replace_range(video, 1, 0, frame)}


class Kandinsky5I2V(Adapter):
    """Kandinsky 5 image-to-video: sequential CFG by call order, the image latent in frame 0 (channels last)."""

    name = "kandinsky5-i2v"
    pipelines = ("Kandinsky5I2VPipeline",)
    guidance = "sequential"
    contexts = None
    batched_inputs = ("hidden_states", "encoder_hidden_states", "timestep", "pooled_projections")
    preset = "paper"
    k_diffusion_refusal = FRAME_REPLACED

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The `in_visual_dim` latent channels of frame 0 of `hidden_states`."""
        return ChannelsLastFirstFrame("hidden_states", pipeline.transformer.config.in_visual_dim)

    def uses_cfg(self, pipeline: Any) -> bool | None:
        """Whether the run's guidance scale exceeds 1 (the pipeline also needs negative embeddings, which it makes)."""
        return pipeline.guidance_scale > 1.0


ADAPTERS: tuple[type[Adapter], ...] = (SanaVideoI2V, Kandinsky5I2V)
