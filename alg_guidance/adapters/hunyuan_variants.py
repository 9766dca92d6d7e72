"""Adapters for two pipelines built on the HunyuanVideo transformer: FramePack and SkyReels-V1 (Hunyuan I2V).

- `HunyuanVideoFramepackPipeline` samples the video in sections, each a full run of the scheduler. The transformer
  gets the section's noisy latents as `hidden_states` and, as clean context, `latents_clean`: the input image's
  latent (the prefix frame, the same in every section) followed by one frame of history, plus coarser history
  (`latents_history_2x`, `latents_history_4x`) and the SigLIP image embedding (`image_embeds`). The history is the
  video generated so far (zeros in the first section), not the image, so ALG low-passes the prefix frame only:
  frame 0 of `latents_clean`, in every section. Each section restarts the scheduler, so the schedule's early
  steps are the early steps of each section, when the image prefix steers that section's trajectory. The SigLIP
  embedding is left unfiltered, as the reference leaves image embeddings. Guidance is embedded (one pass per step);
  with `true_cfg_scale > 1` and a negative prompt the pipeline also calls the transformer for the negative prompt,
  right after the positive one and with no cache context.
- `HunyuanSkyreelsImageToVideoPipeline` (SkyReels-V1-Hunyuan-I2V) concatenates the image latent along the channels:
  `[latents, image_latents]`, 16 + 16 channels, the image latent in latent frame 0 and zeros after it (no mask).
  It runs true CFG by default (`true_cfg_scale` 6 with a negative prompt), the same two calls without context.

Both pipelines draw their image latent from the VAE posterior with the run's generator (`latent_dist.sample`), so
a low-passed image encoded again could not share the run's sample: they filter in latent space only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .base import Adapter, Captures
from .hunyuan import HUNYUAN_BATCHED_INPUTS, _image_latent_channels
from .layouts import ConditionLayout, FirstFrame

FRAMEPACK_BATCHED_INPUTS = (
    *HUNYUAN_BATCHED_INPUTS,
    "image_embeds",
    "latents_clean",
    "latents_history_2x",
    "latents_history_4x",
)
FRAMEPACK_SECTIONS = (
    "it samples the video in sections, each a full scheduler run conditioned on the history latents the pipeline "
    "builds from the sections before it, while a k-diffusion sampler runs one schedule over one latent"
)
"""Why k-diffusion cannot sample FramePack."""


class _TrueCFG(Adapter):
    """HunyuanVideo-style guidance: embedded (one call), or true CFG (positive, then negative call, no context).

    The pipelines keep no record of `true_cfg_scale` or of whether a negative prompt came, so `uses_cfg` cannot
    tell; the engine tells the positive and negative calls apart by their order within a scheduler step.
    """

    guidance = "sequential"
    contexts = None
    pixel_space = False

    def uses_cfg(self, pipeline: Any) -> bool | None:
        """`None`: true CFG depends on call arguments the pipeline does not keep."""
        return None

    def guidance_scale(self, pipeline: Any, arguments: Mapping[str, Any]) -> float:
        """The call's `true_cfg_scale` (its `guidance_scale` is the embedded guidance, a model input)."""
        return float(arguments["true_cfg_scale"])


class HunyuanVideoFramepack(_TrueCFG):
    """FramePack (HunyuanVideo): the image latent is frame 0 of the clean context `latents_clean`, in every section.

    The pipeline casts the float32 image latent that `prepare_image_latents` returns to the transformer's dtype;
    ALG filters the float32 latent and casts once.
    """

    name = "hunyuanvideo-framepack"
    pipelines = ("HunyuanVideoFramepackPipeline",)
    batched_inputs = FRAMEPACK_BATCHED_INPUTS
    captures = "prepare_image_latents"
    preset = "paper"
    k_diffusion_refusal = FRAMEPACK_SECTIONS

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """Frame 0 of `latents_clean`, the image latent in front of the history frame."""
        return FirstFrame("latents_clean", frame_dim=2)

    def prepared_condition(self, pipeline: Any, captures: Captures) -> torch.Tensor | None:
        """The float32 image latent `prepare_image_latents` returned (its first call: the image, not `last_image`)."""
        capture = captures.get(self.captures)
        return None if capture is None else capture.result


class HunyuanVideoSkyreels(_TrueCFG):
    """SkyReels-V1-Hunyuan-I2V: 16 latent + 16 image-latent channels, true CFG 6 by default.

    The pipeline casts the float32 condition that `prepare_latents` returns to the transformer's dtype; ALG filters
    the float32 condition and casts once.
    """

    name = "hunyuanvideo-skyreels"
    pipelines = ("HunyuanSkyreelsImageToVideoPipeline",)
    batched_inputs = HUNYUAN_BATCHED_INPUTS
    captures = "prepare_latents"
    preset = "paper"
    float32_predictions = False  # it concatenates its latents to the condition without casting them

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The image-latent channels after the `in_channels // 2` latent channels."""
        return _image_latent_channels(pipeline.transformer.config.in_channels // 2)

    def prepared_condition(self, pipeline: Any, captures: Captures) -> torch.Tensor | None:
        """The float32 image latents `prepare_latents` returned."""
        capture = captures.get(self.captures)
        return None if capture is None else capture.result[1]

    def decode(self, pipeline: Any, latents: torch.Tensor, arguments: Mapping[str, Any], output_type: str) -> Any:
        """Unscale by the VAE's `scaling_factor` and decode, as the pipeline does."""
        vae = pipeline.vae
        video = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return pipeline.video_processor.postprocess_video(video, output_type=output_type)


ADAPTERS: tuple[type[Adapter], ...] = (HunyuanVideoFramepack, HunyuanVideoSkyreels)
