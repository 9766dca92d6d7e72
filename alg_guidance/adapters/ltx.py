"""Adapters for the LTX-Video image-to-video pipelines: `LTXImageToVideoPipeline` and `LTXConditionPipeline`.

Both pack the latent video into tokens `[B, F * H * W, C]`, frame by frame and row by row (transformer patch
sizes 1, as in every released LTX-Video checkpoint), give the image's tokens timestep 0 so that they are never
denoised, and call the transformer once per step on `[uncond, cond]` under the cache context `"cond_uncond"`.

- `LTXImageToVideoPipeline` writes the image latent into latent frame 0, the first `H * W` tokens, and hands
  the transformer the latent `height` and `width`.
- `LTXConditionPipeline` hands the transformer `video_coords` instead. An image at frame 0 is written into latent
  frame 0; an image at a later frame (a keyframe) becomes `H * W` extra tokens put in front of the video. At every
  step the pipeline adds fresh noise to all these image tokens (`image_cond_noise_scale`). The adapter reads the
  latent size, the token positions and the clean image latents from the run's call to `prepare_latents`, and
  swaps the low-passed latent in under the pipeline's noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ALGError
from .base import Adapter, Capture, Captures
from .layouts import ConditionLayout, PackedFirstFrame
from .wan import FRAME_REPLACED

LTX_BATCHED_INPUTS = ("hidden_states", "encoder_hidden_states", "timestep", "encoder_attention_mask", "video_coords")


class _LTXVideo(Adapter):
    """Batched CFG on token sequences; pixel space encodes with the VAE's mode and the pipeline's normalization.

    Refuses transformers with patch sizes other than 1: their tokens hold several latent pixels (or frames
    0 and 1 together), so the image latent is no run of whole tokens.
    """

    guidance = "batched"
    batched_inputs = LTX_BATCHED_INPUTS
    captures = "prepare_latents"
    pixel_space = True
    preset = "ltx-video"
    k_diffusion_refusal = FRAME_REPLACED

    def refusal(self, pipeline: object) -> str | None:
        """Also refuses transformers with patch sizes other than 1."""
        refusal = super().refusal(pipeline)
        if refusal is not None:
            return refusal
        config = pipeline.transformer.config
        if (config.patch_size, config.patch_size_t) != (1, 1):
            return (
                "it needs a transformer with patch_size=1 and patch_size_t=1 (every released LTX-Video checkpoint), "
                f"but this one has patch_size={config.patch_size}, patch_size_t={config.patch_size_t}: its tokens "
                "do not separate the image latent"
            )
        return None

    def encode_image(self, pipeline: Any, pixels: torch.Tensor, device: Any, dtype: torch.dtype) -> torch.Tensor:
        """The normalized latent `[B, C, H, W]` of preprocessed images `[B, 3, H, W]`: the VAE posterior's mode.

        The pipelines sample the posterior (drawing from the run's generator); ALG takes its mode, so that the
        low-passed condition is deterministic and draws no random numbers.
        """
        vae = pipeline.vae
        latent = vae.encode(pixels.unsqueeze(2).to(vae.dtype)).latent_dist.mode()
        normalized = type(pipeline)._normalize_latents(latent, vae.latents_mean, vae.latents_std)
        return normalized[:, :, 0].to(device, dtype)


class LTXVideoI2V(_LTXVideo):
    """LTX-Video image-to-video (`LTXImageToVideoPipeline`): the image latent is latent frame 0, the first tokens."""

    name = "ltx-video"
    pipelines = ("LTXImageToVideoPipeline",)

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The first `height * width` tokens of `hidden_states`, sized by the transformer's latent size inputs."""
        return PackedFirstFrame("hidden_states")

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Encode the run's low-passed preprocessed image(s) with `encode_image`."""
        arguments = self.captured(captures).arguments
        if arguments["latents"] is not None:
            raise ALGError(
                "pixel-space ALG encodes the run's image, but this run passed `latents`, so the pipeline encoded "
                "no image; use space='latent'"
            )
        return self.encode_image(pipeline, low_pass(arguments["image"]), arguments["device"], arguments["dtype"])


class LTXVideoConditionI2V(_LTXVideo):
    """LTX-Video conditioned on images (`LTXConditionPipeline` with `image=` or `conditions=`).

    Every image condition is filtered: the one at frame 0 and keyframes at later frames. Each must be a single
    image at strength 1 (the default): a video condition, or a strength below 1 (whose latents the pipeline
    partly denoises), is refused at the start of the run, as is a run without an image.
    """

    name = "ltx-video-condition"
    pipelines = ("LTXConditionPipeline",)

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The run's image frames in `hidden_states`, with their clean latents from `prepare_latents`."""
        capture = self.captured(captures)
        frames = self._image_frames(pipeline, capture)
        latents = {"hidden_states": capture.result[0]}
        clean = torch.stack([frame.get(latents) for frame in frames], dim=1)
        return NoisedImageFrames(frames, clean)

    def _image_frames(self, pipeline: Any, capture: Capture) -> tuple[PackedFirstFrame, ...]:
        """Where each image condition's tokens sit, in the order of the conditions; refuses what ALG cannot filter."""
        arguments = capture.arguments
        images = arguments["conditions"]
        if not images:
            raise ALGError(
                "ALG low-passes an image condition, but this LTXConditionPipeline run has none; pass `image=` or "
                "`conditions=`"
            )
        indices, strengths = arguments["condition_frame_index"], arguments["condition_strength"]
        if list(indices).count(0) > 1:
            raise ALGError("ALG needs at most one condition at frame 0, where each overwrites the one before")
        ratio = pipeline.vae_spatial_compression_ratio
        size = (arguments["height"] // ratio, arguments["width"] // ratio)
        keyframes = 0
        frames = []
        for pixels, frame_index, strength in zip(images, indices, strengths, strict=True):
            check_image_condition(pixels, strength, f"frame {frame_index}")
            if frame_index == 0:
                offset = capture.result[3]  # the video's tokens follow the keyframes' tokens
            else:
                offset, keyframes = keyframes * size[0] * size[1], keyframes + 1
            frames.append(PackedFirstFrame("hidden_states", size=size, offset=offset))
        return tuple(frames)

    def encode_pixels(
        self, pipeline: Any, captures: Captures, low_pass: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Encode each low-passed condition image with `encode_image`, in the order of the run's conditions."""
        arguments = self.captured(captures).arguments
        latents = [
            self.encode_image(pipeline, low_pass(pixels[:, :, 0]), arguments["device"], arguments["dtype"])
            for pixels in arguments["conditions"]
        ]
        return torch.stack(latents, dim=1).expand(arguments["batch_size"], -1, -1, -1, -1)


@dataclass(frozen=True, eq=False)
class NoisedImageFrames:
    """Packed image frames to which the pipeline adds noise, given with their clean latents.

    `get` returns the clean latents, so the condition to filter stays the same at every step; `put` moves each
    frame's tokens by `condition - clean`, which gives the new condition under the noise the pipeline added
    (exactly the new condition when it added none).

    Attributes:
        frames: Where each image's tokens sit.
        clean: The clean image latents, `[B, len(frames), C, H, W]` for the pipeline's batch.
    """

    frames: tuple[PackedFirstFrame, ...]
    clean: torch.Tensor

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The clean latents, repeated to the batch of the inputs (the CFG branches hold the same images)."""
        batch = inputs[self.frames[0].input].shape[0]
        return self.clean.repeat(batch // self.clean.shape[0], 1, 1, 1, 1)

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with `condition` (shaped as `get` returns it) in place of the clean latents, noise kept."""
        noised = torch.stack([frame.get(inputs) for frame in self.frames], dim=1)
        moved = condition + (noised - self.get(inputs))
        updated = dict(inputs)
        for index, frame in enumerate(self.frames):
            updated = frame.put(updated, moved[:, index])
        return updated


def check_image_condition(pixels: torch.Tensor, strength: float, where: str) -> None:
    """Refuse a condition ALG cannot low-pass as an image: a video, or one kept at a strength below 1.

    Args:
        pixels: The condition's preprocessed pixels, `[B, C, F, H, W]`.
        strength: The condition's strength.
        where: Where the condition sits, for the message (`"frame 0"`, `"latent index 3"`).

    Raises:
        ALGError: The condition has several frames, or a strength other than 1.
    """
    if pixels.shape[2] != 1:
        raise ALGError(
            f"ALG filters image conditions, but the condition at {where} is a video of {pixels.shape[2]} frames"
        )
    if strength != 1.0:
        raise ALGError(
            f"ALG filters image conditions at strength 1.0, but the condition at {where} has strength {strength}: "
            "the pipeline denoises its latent along with the video"
        )


ADAPTERS: tuple[type[Adapter], ...] = (LTXVideoI2V, LTXVideoConditionI2V)
