"""The adapter for MotifVideo image-to-video (`MotifVideoImage2VideoPipeline`).

The pipeline concatenates `[latents, latent_condition, latent_mask]` along the channels of `hidden_states`
`[B, C, F, H, W]`: `z` latent channels, `z` condition channels holding the image's latent in the first frame and
zeros in the others, and one frame-mask channel. It runs CFG through its guider, one transformer call per guider
batch under the cache contexts `"pred_cond"` and `"pred_uncond"`, as HunyuanVideo 1.5 does; ALG serves it with
the `ClassifierFreeGuidance` guider, whose combination is affine in the two predictions, and refuses other guiders.

The pipeline copies each prediction (`.clone()`) as it stores it for the guider, so the cond prediction it keeps
is a copy made before the uncond call: ALG's correction goes into the uncond prediction (`shift_target =
"uncond"`), with the guider's scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .base import Adapter, Captures
from .guided import CFGGuided
from .layouts import ChannelSlice, ConditionLayout

MOTIF_BATCHED_INPUTS = ("hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask", "image_embeds")


class MotifVideoI2V(CFGGuided):
    """MotifVideo image-to-video: the image latent concatenated along the channels, CFG by its guider.

    Only the `z` condition channels are filtered (the image latent in frame 0, zeros after it); the frame mask is
    the run's own. Pixel space encodes the low-passed first frame with the VAE's mode and the pipeline's
    normalization (the pipeline itself samples the VAE posterior).
    """

    name = "motif-i2v"
    pipelines = ("MotifVideoImage2VideoPipeline",)
    guidance = "sequential"
    contexts = ("pred_cond", "pred_uncond")
    shift_target = "uncond"
    float32_predictions = False  # the latents are stepped in the prediction's dtype and fed uncast
    batched_inputs = MOTIF_BATCHED_INPUTS
    captures = "_prepare_first_frame_conditioning"
    pixel_space = True
    preset = "paper"
    k_diffusion_refusal = (
        "from_pipeline does not wire MotifVideo's guider scale and decoding; sample it through the pipeline"
    )

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The `z` condition channels after the `z` latent channels of `hidden_states`."""
        z_dim = pipeline.vae.config.z_dim
        return ChannelSlice("hidden_states", dim=1, start=z_dim, stop=2 * z_dim)

    def guidance_scale(self, pipeline: Any, arguments: Mapping[str, Any]) -> float:
        """The guider's scale as `w` of `u + w (c - u)`: `guidance_scale`, plus 1 with `use_original_formulation`.

        Asked at each uncond call, which the pipeline makes only on the steps where the guider applies CFG (its
        `start`/`stop` window). Guidance rescale then matches ALG's prediction to the std of the cond one, `c_lp`.
        """
        guider = pipeline.guider
        scale = float(guider.guidance_scale)
        return scale + 1.0 if guider.use_original_formulation else scale  # c + w (c - u) = u + (w + 1) (c - u)

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """The condition channels of the run's low-passed first frame, laid out as the run's own.

        The frame `_prepare_first_frame_conditioning` took (`video[:, 0]`, in `[-1, 1]`) is low-passed, encoded
        with the VAE posterior's mode and normalized with the VAE's `latents_mean` and `latents_std`; it fills
        frame 0, zeros the later frames, and is repeated for `num_videos_per_prompt` as the pipeline repeats it.
        """
        capture = self.captured(captures)
        arguments = capture.arguments
        vae = pipeline.vae
        frame = low_pass(arguments["video"][:, 0:1]).permute(0, 2, 1, 3, 4)  # [B, C, 1, H, W]
        latent = vae.encode(frame.to(vae.dtype)).latent_dist.mode()
        latent = type(pipeline)._normalize_latents(latent, vae.config.latents_mean, vae.config.latents_std)
        condition = torch.zeros_like(capture.result[0])
        condition[:, :, :1] = latent.to(condition.dtype)
        per_image = arguments["latents"].shape[0] // condition.shape[0]
        return condition.repeat_interleave(per_image, dim=0)


ADAPTERS: tuple[type[Adapter], ...] = (MotifVideoI2V,)
