"""Adapter for LTX-2 image-to-video (`LTX2ImageToVideoPipeline`): video and audio from one transformer.

`LTX2VideoTransformer3DModel` denoises a packed video `[B, F * H * W, C]` and a packed audio sequence together and
returns both predictions. The image latent is latent frame 0, the first `H * W` video tokens (patch sizes 1, as in
the released checkpoints), kept out of denoising by a per-token timestep 0, exactly as in LTX-Video's
`LTXImageToVideoPipeline`. Each step calls the transformer once on `[uncond, cond]` (cache context `"cond_uncond"`)
and, with the pipeline's default settings, twice more on the cond batch alone: spatio-temporal guidance
(`"uncond_stg"`, attention skipped in some blocks) and modality-isolation guidance (`"uncond_modality"`, audio-video
cross-attention off). ALG combines the video and the audio predictions by the same rule (the audio hears the image
through cross-attention), and evaluates the two perturbed calls with the low-passed image, shifted by
`u_orig - u_lp` like the cond prediction (see `Adapter.perturbed_contexts`): the step's prediction is then the
pipeline's whole guidance computed with the low-passed image, anchored at the unconditional prediction with the
original image - ALG's rule, with every guidance term included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ALGError
from .base import Adapter, Captures
from .layouts import ConditionLayout, PackedFirstFrame
from .ltx import LTXVideoI2V, check_image_condition

LTX2_BATCHED_INPUTS = (
    "hidden_states",
    "audio_hidden_states",
    "encoder_hidden_states",
    "audio_encoder_hidden_states",
    "timestep",
    "audio_timestep",
    "sigma",
    "audio_sigma",
    "encoder_attention_mask",
    "audio_encoder_attention_mask",
    "video_coords",
    "audio_coords",
    "perturbation_mask",
    "video_self_attention_mask",
    "video_keyframes_mask",
)

LTX2_K_DIFFUSION = (
    "the image latent replaces latent frame 0, which the pipeline keeps out of denoising (per-token timestep 0), "
    "and the transformer denoises an audio track along with the video, while k-diffusion's samplers step one "
    "latent at one sigma"
)


class LTX2I2V(LTXVideoI2V):
    """LTX-2 image-to-video (`LTX2ImageToVideoPipeline`): latent frame 0, the first video tokens; video and audio.

    Pixel space encodes the low-passed image with the VAE posterior's mode, as the pipeline itself does
    (`sample_mode="argmax"`), normalized with the VAE's latent statistics. The H.264 re-compression the pipeline
    applies first (`image_crf`) is part of the captured image, so the filter acts on the re-compressed image.
    """

    name = "ltx2"
    pipelines = ("LTX2ImageToVideoPipeline",)
    batched_inputs = LTX2_BATCHED_INPUTS
    preset = "ltx2"
    k_diffusion_refusal = LTX2_K_DIFFUSION
    predictions = 2
    perturbed_contexts = ("uncond_stg", "uncond_modality")


class LTX2ConditionI2V(LTX2I2V):
    """LTX-2 conditioned on images (`LTX2ConditionPipeline` with `conditions=`), video and audio.

    An image at latent index 0 overwrites latent frame 0, the first `H * W` video tokens; an image at a later index
    (a keyframe) becomes `H * W` tokens appended after the video's, in the order of the conditions. At strength 1
    the pipeline keeps all of them clean (conditioning mask 1: timestep 0, and its prediction replaced by the clean
    latent), so the transformer sees the image latents themselves, and ALG filters every one of them. The adapter
    reads the conditions from the run's call to `preprocess_conditions`: each must be a single image at strength 1
    (the default); a video condition, a strength below 1 (whose tokens the pipeline partly denoises), two images at
    index 0 or a run without an image are refused at the first denoiser call, before anything is evaluated.
    """

    name = "ltx2-condition"
    pipelines = ("LTX2ConditionPipeline",)
    captures = "preprocess_conditions"

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The tokens of every image condition in `hidden_states`, in the order of the conditions."""
        capture = self.captured(captures)
        arguments, (pixels, strengths, indices, _) = capture.arguments, capture.result
        if not pixels:
            raise ALGError(
                "ALG low-passes an image condition, but this LTX2ConditionPipeline run has none; pass `conditions=`"
            )
        if list(indices).count(0) > 1:
            raise ALGError("ALG needs at most one condition at latent index 0, where each overwrites the one before")
        ratio = pipeline.vae_spatial_compression_ratio
        size = (arguments["height"] // ratio, arguments["width"] // ratio)
        frame_tokens = size[0] * size[1]
        latent_frames = (arguments["num_frames"] - 1) // pipeline.vae_temporal_compression_ratio + 1
        keyframes = 0
        frames = []
        for condition, strength, index in zip(pixels, strengths, indices, strict=True):
            check_image_condition(condition, strength, f"latent index {index}")
            if index == 0:
                offset = 0
            else:
                offset, keyframes = (latent_frames + keyframes) * frame_tokens, keyframes + 1
            frames.append(PackedFirstFrame("hidden_states", size=size, offset=offset))
        return PackedFrames(tuple(frames))

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Encode each low-passed condition image with `encode_image`, in the order of the run's conditions."""
        capture = self.captured(captures)
        pixels, device = capture.result[0], capture.arguments["device"]
        latents = [self.encode_image(pipeline, low_pass(frames[:, :, 0]), device, torch.float32) for frames in pixels]
        return torch.stack(latents, dim=1)


@dataclass(frozen=True)
class PackedFrames:
    """Several packed latent frames of a token sequence, read and written together as `[B, frames, C, H, W]`.

    Attributes:
        frames: Where each frame's tokens sit.
    """

    frames: tuple[PackedFirstFrame, ...]

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The frames, stacked along dimension 1."""
        return torch.stack([frame.get(inputs) for frame in self.frames], dim=1)

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with each frame's tokens replaced by `condition[:, index]`."""
        updated = dict(inputs)
        for index, frame in enumerate(self.frames):
            updated = frame.put(updated, condition[:, index])
        return updated


ADAPTERS: tuple[type[Adapter], ...] = (LTX2I2V, LTX2ConditionI2V)
