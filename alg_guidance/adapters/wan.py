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

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .base import Adapter, Captures
from .layouts import ChannelSlice, ConditionLayout, FirstFrame

WAN_BATCHED_INPUTS = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_hidden_states_image")
FRAME_REPLACED = (
    "the image latent replaces latent frame 0, which the pipeline keeps out of denoising (per-token timestep 0), "
    "while k-diffusion's samplers step the whole latent at one sigma"
)
"""Why k-diffusion cannot sample the families whose condition replaces the first latent frame."""


class _WanFamily(Adapter):
    """Sequential CFG under the contexts "cond" and "uncond"; the run's condition read from `prepare_latents`.

    `prepare_latents` returns the condition in float32; the pipeline casts it to the transformer's dtype when it
    concatenates it to the latents. ALG filters the float32 condition and casts once.
    """

    guidance = "sequential"
    contexts = ("cond", "uncond")
    batched_inputs = WAN_BATCHED_INPUTS
    captures = "prepare_latents"
    pixel_space = True
    guider_denoisers = ("WanTransformer3DModel",)

    def refusal(self, pipeline: object) -> str | None:
        """Also refuses a transformer without the condition channels (a text-to-video checkpoint)."""
        refusal = super().refusal(pipeline)
        if refusal is not None or pipeline.config.get("expand_timesteps", False):  # TI2V: frame 0, no channels
            return refusal
        config = self.denoisers(pipeline)[0].config
        z_dim = pipeline.vae.config.z_dim
        if config.in_channels <= z_dim:
            return (
                f"its transformer takes {config.in_channels} input channels, the latent's {z_dim} alone: a "
                "text-to-video checkpoint, with no image condition to low-pass"
            )
        return None

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The condition channels after the `z_dim` latent channels."""
        return ChannelSlice("hidden_states", dim=1, start=pipeline.vae.config.z_dim)

    def guider_layout(self, denoiser: torch.nn.Module) -> ConditionLayout | None:
        """The channels after the `out_channels` latent channels, for a transformer that takes condition channels."""
        config = denoiser.config
        if type(denoiser).__name__ not in self.guider_denoisers or config.in_channels <= config.out_channels:
            return None
        return ChannelSlice("hidden_states", dim=1, start=config.out_channels)

    def prepared_condition(self, pipeline: Any, captures: Captures) -> torch.Tensor | None:
        """The float32 condition `prepare_latents` returned, as the layout reads it."""
        capture = captures.get(self.captures)
        return None if capture is None else self.condition_of(capture.result[1])

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Run the pipeline's own `prepare_latents` on the low-passed image(s), reusing the run's latents.

        `prepare_latents` encodes with the VAE's mode and the pipeline's normalization, so the result is the
        deterministic condition of the filtered image; passing the run's latents keeps it from drawing noise.
        """
        capture = self.captured(captures)
        arguments = dict(capture.arguments)
        for name in ("image", "last_image"):
            if arguments.get(name) is not None:
                arguments[name] = low_pass(arguments[name])
        arguments["latents"] = capture.result[0]
        return self.condition_of(type(pipeline).prepare_latents(pipeline, **arguments)[1])

    def condition_of(self, prepared: torch.Tensor) -> torch.Tensor:
        """The part of `prepare_latents`' condition that `layout` reads; all of it by default."""
        return prepared

    def decode(self, pipeline: Any, latents: torch.Tensor, arguments: Mapping[str, Any], output_type: str) -> Any:
        """Undo the VAE's latent normalization (`latents_mean`, `latents_std`), then decode, as the pipeline does."""
        from diffusers.utils.torch_utils import get_module_execution_device

        vae = pipeline.vae
        latents = latents.to(get_module_execution_device(vae), vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
        inverse_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
        video = vae.decode(latents / inverse_std + mean, return_dict=False)[0]
        return pipeline.video_processor.postprocess_video(video, output_type=output_type)


class Wan21(_WanFamily):
    """Wan 2.1 image-to-video (480p and 720p), including first-last-frame generation."""

    name = "wan2.1"
    pipelines = ("WanImageToVideoPipeline",)
    preset = "wan2.1"

    def refusal(self, pipeline: object) -> str | None:
        """A `WanImageToVideoPipeline` with one transformer and a concatenated condition."""
        return super().refusal(pipeline) or _config_refusal(pipeline, two_experts=False, expand_timesteps=False)


class Wan22(_WanFamily):
    """Wan 2.2 A14B image-to-video: a high-noise and a low-noise expert, both guided."""

    name = "wan2.2"
    pipelines = ("WanImageToVideoPipeline",)
    preset = "wan2.2"
    k_diffusion_refusal = (
        "its two experts take over from each other at boundary_ratio, each with its own guidance scale, and the "
        "guided denoiser wraps one model with one scale"
    )

    def refusal(self, pipeline: object) -> str | None:
        """A `WanImageToVideoPipeline` with two experts (`boundary_ratio` set)."""
        return super().refusal(pipeline) or _config_refusal(pipeline, two_experts=True, expand_timesteps=False)


class Wan22TI2V(_WanFamily):
    """Wan 2.2 TI2V-5B image-to-video: the image latent replaces the first latent frame."""

    name = "wan2.2-ti2v"
    pipelines = ("WanImageToVideoPipeline",)
    preset = "wan2.2"
    k_diffusion_refusal = FRAME_REPLACED

    def refusal(self, pipeline: object) -> str | None:
        """A `WanImageToVideoPipeline` with `expand_timesteps`."""
        return super().refusal(pipeline) or _config_refusal(pipeline, two_experts=None, expand_timesteps=True)

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
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


def _config_refusal(pipeline: Any, *, two_experts: bool | None, expand_timesteps: bool) -> str | None:
    """Why a `WanImageToVideoPipeline`'s config is not the variant an adapter serves, or `None`."""
    config = pipeline.config
    if bool(config.get("expand_timesteps", False)) != expand_timesteps:
        return (
            "Wan 2.2 TI2V-5B (expand_timesteps=True) is served by 'wan2.2-ti2v'"
            if not expand_timesteps
            else ("it serves Wan 2.2 TI2V-5B, whose pipeline sets expand_timesteps=True; this one does not")
        )
    if two_experts is not None and (config.get("boundary_ratio") is not None) != two_experts:
        return (
            "a pipeline with two experts (boundary_ratio set) is Wan 2.2 A14B, served by 'wan2.2'"
            if not two_experts
            else "it serves Wan 2.2 A14B, with two experts (boundary_ratio set); this pipeline has one"
        )
    return None


ADAPTERS: tuple[type[Adapter], ...] = (Wan21, Wan22, Wan22TI2V, SkyReelsV2)
