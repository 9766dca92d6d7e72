"""The adapter for CogVideoX 1.0 and 1.5 image-to-video pipelines (`CogVideoXImageToVideoPipeline`).

The pipeline concatenates its image-latent video to the noisy latents along the channels of the frame-major
`hidden_states` `[B, F, 2C, H, W]`: `hidden_states[:, :, C:]` holds the image latent in its first frame and zeros in
the others (zeros stay zeros through any low-pass filter). It runs CFG in one call on `[uncond, cond]` under the
cache context `"cond_uncond"`, and with `use_dynamic_cfg` recomputes its scale from the timestep at every step,
which the batched rule follows exactly.

CogVideoX 1.5 differs only in its transformer config (`patch_size_t=2`, an `ofs` embedding): the pipeline pads
the latent frames to a multiple of `patch_size_t`, so one adapter serves both versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from .base import Adapter, Captures
from .layouts import ChannelSlice, ConditionLayout


class CogVideoX(Adapter):
    """CogVideoX-5B I2V and CogVideoX 1.5 5B I2V: batched CFG, the image latent concatenated along the channels.

    The `ofs` and `image_rotary_emb` inputs are shared by the whole batch, so only `hidden_states`, `timestep` and
    `encoder_hidden_states` are split into branches.
    """

    name = "cogvideox"
    pipelines = ("CogVideoXImageToVideoPipeline",)
    guidance = "batched"
    contexts = None
    batched_inputs = ("hidden_states", "timestep", "encoder_hidden_states")
    captures = "prepare_latents"
    pixel_space = True
    preset = "cogvideox"

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The image-latent channels, the second half of `hidden_states`' channels (dim 2)."""
        return ChannelSlice("hidden_states", dim=2, start=pipeline.transformer.config.in_channels // 2)

    def uses_cfg(self, pipeline: Any) -> bool:
        """Whether the run's guidance scale exceeds 1, the pipeline's own test (read before any dynamic update)."""
        return pipeline.guidance_scale > 1

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """The image-latent video of the run's low-passed image, laid out frame by frame as `prepare_latents` does.

        `prepare_latents` samples the VAE posterior with the run's generator; this takes the posterior's mode
        instead, so the condition is deterministic and the run's random numbers are left alone. The latent is
        scaled as the pipeline scales it (`invert_scale_latents` divides), followed by zero frames up to the run's
        latent frame count, and led by the frames `prepare_latents` repeats to fill a temporal patch.
        """
        capture = self.captured(captures)
        arguments, prepared = capture.arguments, capture.result[1]
        vae = pipeline.vae
        image = low_pass(arguments["image"]).unsqueeze(2)  # [B, C, 1, H, W]: a one-frame video
        latent = vae.encode(image).latent_dist.mode().transpose(1, 2).to(prepared.dtype)
        scale = pipeline.vae_scaling_factor_image
        latent = latent * (1 / scale if vae.config.invert_scale_latents else scale)
        frames = (arguments["num_frames"] - 1) // pipeline.vae_scale_factor_temporal + 1
        padding = latent.new_zeros(latent.shape[0], frames - 1, *latent.shape[2:])
        video = torch.cat([latent, padding], dim=1)
        repeated = prepared.shape[1] - frames
        return torch.cat([video[:, :repeated], video], dim=1)

    def decode(self, pipeline: Any, latents: torch.Tensor, arguments: Mapping[str, Any], output_type: str) -> Any:
        """The pipeline's `decode_latents`, after dropping the frames CogVideoX 1.5 prepends for a temporal patch."""
        from diffusers.utils.torch_utils import get_module_execution_device

        frames = (arguments["num_frames"] - 1) // pipeline.vae_scale_factor_temporal + 1
        latents = latents[:, latents.shape[1] - frames :]
        video = pipeline.decode_latents(latents.to(get_module_execution_device(pipeline.vae), pipeline.vae.dtype))
        return pipeline.video_processor.postprocess_video(video=video, output_type=output_type)


ADAPTERS: tuple[type[Adapter], ...] = (CogVideoX,)
