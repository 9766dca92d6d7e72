"""Adapters for Cosmos Predict 2 video-to-world and Cosmos Predict 2.5 (image or video to world).

The pipelines are `Cosmos2VideoToWorldPipeline` and `Cosmos2_5_PredictBasePipeline`.

Both put the conditioning latent frames (the image's, or the last frames of a conditioning video) in place of the
first latent frames of `hidden_states` `[B, C, T, H, W]`, mark them with a `condition_mask` input and a near-zero
per-frame timestep, and overwrite the prediction of those frames afterwards. They call the transformer for the
prompt, then for the negative prompt, with no cache context (told apart by their order within a step), and
combine `c + w (c - u)` = `u + (w + 1)(c - u)`. Before the negative call, the pipeline has already turned the
prompt prediction into a new tensor (Cosmos 2: the x0 prediction `c_skip * x + c_out * D`; Cosmos 2.5: the
velocity with the conditioning frames overwritten), affine in the model's output and the same map for both calls:
ALG's correction goes into the negative prediction (`shift_target = "uncond"`) with `w + 1` as the scale.

Only the conditioning frames are low-passed; their condition mask and timestep are the run's own. The overwritten
conditioning-frame predictions never reach the sampled frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import ALGError
from .base import Adapter, Captures
from .layouts import ChannelSlice, ConditionLayout

COSMOS_BATCHED_INPUTS = ("hidden_states", "timestep", "encoder_hidden_states", "condition_mask")
K_DIFFUSION_REFUSAL = (
    "the pipeline replaces the conditioning latent frames in the noisy latents and the prediction at every step and "
    "gives them their own timestep, which a k-diffusion sampler's one sigma per call cannot express"
)


class _Cosmos(Adapter):
    """What both Cosmos pipelines share: conditioning frames first in `hidden_states`, CFG as `c + w (c - u)`."""

    guidance = "sequential"
    contexts = None
    shift_target = "uncond"
    float32_predictions = False  # the latents are stepped in the prediction's dtype
    batched_inputs = COSMOS_BATCHED_INPUTS
    captures = "prepare_latents"
    preset = "paper"
    k_diffusion_refusal = K_DIFFUSION_REFUSAL
    cond_latents_index = 1
    """Where `prepare_latents`' result holds the (float32) conditioning latents."""

    def conditioning_frames(self, captures: Captures) -> int:
        """How many latent frames condition this run, from the indicator `prepare_latents` returned."""
        raise NotImplementedError

    def layout(self, pipeline: Any, captures: Captures) -> ConditionLayout:
        """The first `n` latent frames of `hidden_states`, `n` the run's conditioning latent frames.

        Raises:
            ALGError: The run has no conditioning frame (text to world): there is no image condition to low-pass.
        """
        frames = self.conditioning_frames(captures)
        if frames == 0:
            raise ALGError(
                f"this {type(pipeline).__name__} run has no image or video condition (text to world): ALG low-passes "
                "an image condition; pass image= or video=, or sample without ALG"
            )
        return ChannelSlice("hidden_states", dim=2, start=0, stop=frames)

    def prepared_condition(self, pipeline: Any, captures: Captures) -> torch.Tensor | None:
        """The conditioning frames of the float32 latents `prepare_latents` returned, before the cast."""
        latents = self.captured(captures).result[self.cond_latents_index]
        return latents[:, :, : self.conditioning_frames(captures)]

    def guidance_scale(self, pipeline: Any, arguments: Mapping[str, Any]) -> float:
        """`w + 1` for the pipeline's `guidance_scale` `w`: it combines `c + w (c - u)` = `u + (w + 1)(c - u)`."""
        return float(pipeline.guidance_scale) + 1.0


class Cosmos2VideoToWorld(_Cosmos):
    """Cosmos Predict 2 video-to-world: an image (or the last frames of a video) conditions the first latent frames.

    The pipeline hands the transformer `c_in * x` with the conditioning frames replaced by their latents, and turns
    each output into the x0 prediction `c_skip * x + c_out * D` before combining; the map is the same for both
    calls, so ALG on the model's outputs is ALG on the x0 predictions.
    """

    name = "cosmos2"
    pipelines = ("Cosmos2VideoToWorldPipeline",)

    def conditioning_frames(self, captures: Captures) -> int:
        """The frames `cond_indicator` (the third result of `prepare_latents`, `[1, 1, T, 1, 1]`) marks."""
        return int(self.captured(captures).result[2][0, 0, :, 0, 0].sum().item())


class Cosmos2_5Predict(_Cosmos):
    """Cosmos Predict 2.5: image to world (one conditioning latent frame) or video to world (one or two).

    Text to world (neither image nor video) has no condition, and ALG refuses such a run.
    """

    name = "cosmos2.5"
    pipelines = ("Cosmos2_5_PredictBasePipeline",)

    def conditioning_frames(self, captures: Captures) -> int:
        """The frames `cond_indicator` (the fourth result of `prepare_latents`, `[B, 1, T, 1, 1]`) marks."""
        return int(self.captured(captures).result[3][0, 0, :, 0, 0].sum().item())


ADAPTERS: tuple[type[Adapter], ...] = (Cosmos2VideoToWorld, Cosmos2_5Predict)
