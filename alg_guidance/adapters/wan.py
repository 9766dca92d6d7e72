"""Adapters for Wan 2.1, Wan 2.2 (A14B and TI2V-5B) and SkyReels-V2 image-to-video pipelines.

All four run CFG sequentially: a `"cond"` call, then an `"uncond"` call, each under its cache context.

- Wan 2.1 I2V (also first-last-frame use) and SkyReels-V2 I2V concatenate the condition to the latents:
  `hidden_states[:, z:]`, 4 mask channels and `z` latent channels over all frames. The mask is spatially
  constant, so filtering it changes nothing.
- Wan 2.2 A14B does the same with two transformers, switching at `boundary_ratio`; both are guided, each with
  the pipeline's own scale (`guidance_scale`, `guidance_scale_2`).
- Wan 2.2 TI2V-5B writes the image latent into the first latent frame instead (`expand_timesteps`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import Adapter
from .layouts import ChannelSlice, ConditionLayout, FirstFrame

WAN_BATCHED_INPUTS = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_hidden_states_image")


class _WanFamily(Adapter):
    """Sequential CFG under the contexts "cond" and "uncond"; pixel space through the pipeline's `prepare_latents`."""

    guidance = "sequential"
    contexts = ("cond", "uncond")
    batched_inputs = WAN_BATCHED_INPUTS
    pixel_capture = "prepare_latents"

    def layout(self) -> ConditionLayout:
        """The condition channels after the `z_dim` latent channels."""
        return ChannelSlice("hidden_states", dim=1, start=self.pipeline.vae.config.z_dim)

    def encode_pixels(self, low_pass: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Run the pipeline's own `prepare_latents` on the low-passed image(s), reusing the run's latents.

        `prepare_latents` encodes with the VAE's mode and the pipeline's normalization, so the result is the
        deterministic condition of the filtered image; passing the run's latents keeps it from drawing noise.
        """
        arguments = self.captured_arguments()
        for name in ("image", "last_image"):
            if arguments.get(name) is not None:
                arguments[name] = low_pass(arguments[name])
        arguments["latents"] = self.captured_result[0]
        return self.condition_of(type(self.pipeline).prepare_latents(self.pipeline, **arguments)[1])

    def condition_of(self, prepared: torch.Tensor) -> torch.Tensor:
        """The part of `prepare_latents`' condition that `layout` reads; all of it by default."""
        return prepared


class Wan21(_WanFamily):
    """Wan 2.1 image-to-video (480p and 720p), including first-last-frame generation."""

    name = "wan2.1"
    pipelines = ("WanImageToVideoPipeline",)
    preset = "wan2.1"

    @classmethod
    def matches(cls, pipeline: object) -> bool:
        """A `WanImageToVideoPipeline` with one transformer and a concatenated condition."""
        config = getattr(pipeline, "config", {})
        return (
            super().matches(pipeline)
            and config.get("boundary_ratio") is None
            and not config.get("expand_timesteps", False)
        )


class Wan22(_WanFamily):
    """Wan 2.2 A14B image-to-video: a high-noise and a low-noise expert, both guided."""

    name = "wan2.2"
    pipelines = ("WanImageToVideoPipeline",)
    preset = "wan2.2"

    @classmethod
    def matches(cls, pipeline: object) -> bool:
        """A `WanImageToVideoPipeline` with two experts (`boundary_ratio` set)."""
        config = getattr(pipeline, "config", {})
        return (
            super().matches(pipeline)
            and config.get("boundary_ratio") is not None
            and not config.get("expand_timesteps", False)
        )


class Wan22TI2V(_WanFamily):
    """Wan 2.2 TI2V-5B image-to-video: the image latent replaces the first latent frame."""

    name = "wan2.2-ti2v"
    pipelines = ("WanImageToVideoPipeline",)
    preset = "wan2.2"

    @classmethod
    def matches(cls, pipeline: object) -> bool:
        """A `WanImageToVideoPipeline` with `expand_timesteps`."""
        return super().matches(pipeline) and bool(getattr(pipeline, "config", {}).get("expand_timesteps", False))

    def layout(self) -> ConditionLayout:
        """The first latent frame of `hidden_states`."""
        return FirstFrame("hidden_states", frame_dim=2)

    def condition_of(self, prepared: torch.Tensor) -> torch.Tensor:
        """The first frame of the encoded video, where the image latent sits."""
        return prepared[:, :, :1]


class SkyReelsV2(_WanFamily):
    """SkyReels-V2 image-to-video (the Wan 2.1 architecture)."""

    name = "skyreels-v2"
    pipelines = ("SkyReelsV2ImageToVideoPipeline",)
    preset = "skyreels-v2"


ADAPTERS: tuple[type[Adapter], ...] = (Wan21, Wan22, Wan22TI2V, SkyReelsV2)
