"""Adapters for the HunyuanVideo image-to-video pipelines: HunyuanVideo-I2V (both checkpoints) and HunyuanVideo 1.5.

- `HunyuanVideoImageToVideoPipeline` conditions on the image in one of two ways, set by the transformer's
  `image_condition_type`: `"token_replace"` (the HunyuanVideo-I2V checkpoint) writes the image latent into latent
  frame 0 and steps only frames `1:`; `"latent_concat"` (HunyuanVideo-I2V-33ch) concatenates
  `[latents, image_latents, mask]` along the channels. Its usual guidance is embedded (the `guidance` input, one
  pass per step); with `true_cfg_scale > 1` and a negative prompt it also calls the transformer for the negative
  prompt, right after the positive one and with no cache context.
- `HunyuanVideo15ImageToVideoPipeline` concatenates `[latents, image_latents, mask]` too, and runs CFG through
  its `ClassifierFreeGuidance` guider: one call per guider batch, under the cache contexts `"pred_cond"` and
  `"pred_uncond"`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from ..errors import ALGError
from .base import Adapter, Captures
from .guided import CFGGuided
from .layouts import ChannelSlice, ConditionLayout, FirstFrame
from .wan import FRAME_REPLACED

HUNYUAN_BATCHED_INPUTS = (
    "hidden_states",
    "timestep",
    "encoder_hidden_states",
    "encoder_attention_mask",
    "pooled_projections",
    "guidance",
)
HUNYUAN15_BATCHED_INPUTS = (
    "hidden_states",
    "timestep",
    "timestep_r",
    "encoder_hidden_states",
    "encoder_attention_mask",
    "encoder_hidden_states_2",
    "encoder_attention_mask_2",
    "image_embeds",
)


def _image_latent_channels(latent_channels: int) -> ChannelSlice:
    """The image-latent channels of `cat([latents, image_latents, mask], dim=1)`, leaving out the frame mask."""
    return ChannelSlice("hidden_states", dim=1, start=latent_channels, stop=2 * latent_channels)


class _HunyuanVideoI2V(Adapter):
    """`HunyuanVideoImageToVideoPipeline`, in either image-conditioning mode.

    The pipeline keeps no record of `true_cfg_scale` or of whether a negative prompt came, so `uses_cfg` cannot
    tell; the engine tells the positive and negative calls apart by their order within a scheduler step.

    Attributes:
        condition_type: The transformer's `image_condition_type` this adapter serves.
    """

    pipelines = ("HunyuanVideoImageToVideoPipeline",)
    guidance = "sequential"
    contexts = None
    batched_inputs = HUNYUAN_BATCHED_INPUTS
    captures = "prepare_latents"
    pixel_space = True
    condition_type: ClassVar[str]

    def refusal(self, pipeline: object) -> str | None:
        """A `HunyuanVideoImageToVideoPipeline` whose transformer has this adapter's `image_condition_type`."""
        refusal = super().refusal(pipeline)
        if refusal is not None:
            return refusal
        condition_type = pipeline.transformer.config.get("image_condition_type")
        if condition_type != self.condition_type:
            return f"it serves image_condition_type={self.condition_type!r}, this transformer has {condition_type!r}"
        return None

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """Latent frame 0 for `"token_replace"`, the image-latent channels for `"latent_concat"`."""
        config = pipeline.transformer.config
        if config.image_condition_type == "token_replace":
            return FirstFrame("hidden_states", frame_dim=2)
        return _image_latent_channels((config.in_channels - 1) // 2)

    def uses_cfg(self, pipeline: Any) -> bool | None:
        """`None`: true CFG depends on call arguments the pipeline does not keep."""
        return None

    def guidance_scale(self, pipeline: Any, arguments: Mapping[str, Any]) -> float:
        """The call's `true_cfg_scale` (its `guidance_scale` is the embedded guidance, a model input)."""
        return float(arguments["true_cfg_scale"])

    def decode(self, pipeline: Any, latents: torch.Tensor, arguments: Mapping[str, Any], output_type: str) -> Any:
        """Unscale by `vae_scaling_factor` and decode; `"latent_concat"` drops the 4 frames of its leading latent frame.

        The final latents of `"latent_concat"` lead with the image's latent frame, which the pipeline's output leaves
        out: its `"latent"` output drops that latent frame, its decoded output the 4 frames it decodes to.
        """
        vae = pipeline.vae
        video = vae.decode(latents.to(vae.dtype) / pipeline.vae_scaling_factor, return_dict=False)[0]
        if pipeline.transformer.config.image_condition_type == "latent_concat":
            video = video[:, :, 4:]
        return pipeline.video_processor.postprocess_video(video, output_type=output_type)

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Run the pipeline's own `prepare_latents` on the low-passed image, reusing the run's latents.

        `prepare_latents` encodes with the VAE's mode and multiplies by the pipeline's `vae_scaling_factor`;
        given the run's latents it draws no noise. Its image latent fills latent frame 0 of the condition the
        run used (for `"latent_concat"` the pipeline zeroes the later frames afterwards, so they stay zero).
        """
        capture = self.captured(captures)
        arguments = dict(capture.arguments)
        arguments["image"] = low_pass(arguments["image"])
        arguments["latents"] = capture.result[0]
        encoded = type(pipeline).prepare_latents(pipeline, **arguments)[1]
        condition = capture.result[1].clone()
        condition[:, :, :1] = encoded[:, :, :1]
        return condition


class HunyuanVideoI2V(_HunyuanVideoI2V):
    """HunyuanVideo-I2V ("token_replace"): the image latent replaces latent frame 0; embedded guidance 6.0.

    The low-passed latent goes into frame 0 of the transformer input only; the pipeline keeps stepping frames
    `1:` and writing the original image latent back into frame 0.
    """

    name = "hunyuanvideo"
    preset = "hunyuanvideo"
    condition_type = "token_replace"
    k_diffusion_refusal = FRAME_REPLACED


class HunyuanVideoI2V33ch(_HunyuanVideoI2V):
    """HunyuanVideo-I2V-33ch ("latent_concat"): 16 latent + 16 image-latent + 1 mask channel.

    Only the image-latent channels are filtered; the mask is the run's own, untouched.
    """

    name = "hunyuanvideo-33ch"
    preset = "paper"
    condition_type = "latent_concat"
    float32_predictions = False  # it concatenates its latents to the condition without casting them


class HunyuanVideo15I2V(CFGGuided):
    """HunyuanVideo 1.5 image-to-video, guided by its `ClassifierFreeGuidance` guider.

    The guider combines `pred_uncond + w * (pred_cond - pred_uncond)` (or `pred_cond + w * (pred_cond -
    pred_uncond)` with `use_original_formulation`) from the two predictions the pipeline stores, after both
    calls of a step; both are affine in the predictions with weights summing to one, so the sequential rule is
    exact for either. Other guiders combine their predictions otherwise and are refused: ALG runs with them as the
    guider [`ALGGuidance`][alg_guidance.integrations.diffusers.guider.ALGGuidance], which this adapter's
    `guider_layout` serves.
    """

    name = "hunyuanvideo1.5"
    pipelines = ("HunyuanVideo15ImageToVideoPipeline",)
    guidance = "sequential"
    contexts = ("pred_cond", "pred_uncond")
    batched_inputs = HUNYUAN15_BATCHED_INPUTS
    captures = "prepare_cond_latents_and_mask"
    pixel_space = True
    preset = "paper"
    guider_denoisers = ("HunyuanVideo15Transformer3DModel",)
    float32_predictions = False  # it concatenates its latents to the condition without casting them

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The image-latent channels after the `num_channels_latents` latent channels."""
        return _image_latent_channels(pipeline.num_channels_latents)

    def guider_layout(self, denoiser: torch.nn.Module) -> ConditionLayout | None:
        """The image-latent channels after the `out_channels` latent channels (the frame mask left out)."""
        if type(denoiser).__name__ not in self.guider_denoisers:
            return None
        return _image_latent_channels(denoiser.config.out_channels)

    def guidance_scale(self, pipeline: Any, arguments: Mapping[str, Any]) -> float:
        """The guider's scale as `w` of `u + w (c - u)`, for a guider active over the whole run without rescaling.

        Raises:
            ALGError: The guider is active in a window of the run only, or rescales its prediction.
        """
        guider = pipeline.guider
        window = (guider.config.get("start", 0.0), guider.config.get("stop", 1.0))
        if window != (0.0, 1.0) or guider.guidance_rescale != 0.0:
            raise ALGError(
                "sampling with one CFG scale needs a guider active over the whole run (start 0, stop 1) without "
                f"guidance_rescale; this one has start {window[0]}, stop {window[1]}, guidance_rescale "
                f"{guider.guidance_rescale}"
            )
        scale = float(guider.guidance_scale)
        return scale + 1.0 if guider.use_original_formulation else scale  # c + w (c - u) = u + (w + 1) (c - u)

    def decode(self, pipeline: Any, latents: torch.Tensor, arguments: Mapping[str, Any], output_type: str) -> Any:
        """Unscale by the VAE's `scaling_factor` and decode, as the pipeline does."""
        vae = pipeline.vae
        video = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return pipeline.video_processor.postprocess_video(video, output_type=output_type)

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Encode the low-passed image with the pipeline's own `_get_image_latents` (VAE mode, its scaling).

        The image the run passed to `prepare_cond_latents_and_mask` (already resized by the pipeline) is
        preprocessed by the pipeline's processor, low-passed, then encoded; the result fills latent frame 0 of
        the condition the run used, whose later frames are zero.
        """
        capture = self.captured(captures)
        arguments = capture.arguments
        encoded = type(pipeline)._get_image_latents(
            vae=pipeline.vae,
            image_processor=_LowPassedImages(pipeline.video_processor, low_pass),
            image=arguments["image"],
            height=arguments["height"],
            width=arguments["width"],
            device=arguments["device"],
        )
        condition = capture.result[0].clone()
        condition[:, :, :1] = encoded
        return condition


class _LowPassedImages:
    """An image processor that low-passes what the pipeline's own processor makes of an image."""

    def __init__(self, processor: Any, low_pass: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.processor = processor
        self.low_pass = low_pass

    def preprocess(self, image: Any, **kwargs: Any) -> torch.Tensor:
        return self.low_pass(self.processor.preprocess(image, **kwargs))


ADAPTERS: tuple[type[Adapter], ...] = (HunyuanVideoI2V, HunyuanVideoI2V33ch, HunyuanVideo15I2V)
