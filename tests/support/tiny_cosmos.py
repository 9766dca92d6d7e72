"""Tiny random-weight Cosmos Predict 2 video-to-world and Cosmos Predict 2.5 pipelines, built from configs in code.

Nothing is downloaded: the runs pass prompt embeddings, so the text encoders and tokenizers are left out. Both
pipelines refuse to run without a safety checker (NVIDIA's `cosmos_guardrail`, a separate package with its own
model downloads); [`GuardrailStandIn`][tests.support.tiny_cosmos.GuardrailStandIn] stands in for that guardrail
only - it checks prompts and videos, which ALG never touches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import (
    Cosmos2_5_PredictBasePipeline,
    Cosmos2VideoToWorldPipeline,
    CosmosTransformer3DModel,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from .families import Family
from .tiny_wan import _vae, image

TEXT_DIM = 32
TEXT_TOKENS = 6
CFG = 3.0
SIZE = 32


class GuardrailStandIn:
    """Stands in for the Cosmos guardrail (`cosmos_guardrail.CosmosSafetyChecker`): passes every prompt and video.

    The pipelines call `to(device)`, `check_text_safety(prompt)` and `check_video_safety(video)`; the guardrail
    filters what the user asked for and what the pipeline made, never the denoiser's inputs or predictions.
    """

    def to(self, *args: Any, **kwargs: Any) -> GuardrailStandIn:
        return self

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, video: np.ndarray) -> np.ndarray:
        return video


def _transformer(**extra: Any) -> CosmosTransformer3DModel:
    return CosmosTransformer3DModel(
        in_channels=16 + 1,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=1,
        mlp_ratio=2.0,
        text_embed_dim=TEXT_DIM,
        adaln_lora_dim=4,
        max_size=(4, 16, 16),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=True,
        extra_pos_embed_type="learnable",
        **extra,
    )


def cosmos2_video2world() -> Cosmos2VideoToWorldPipeline:
    """Cosmos Predict 2 video-to-world: 16 latent channels (+ the condition mask inside the transformer), Wan VAE."""
    torch.manual_seed(0)
    pipe = Cosmos2VideoToWorldPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=_transformer(),
        vae=_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
        safety_checker=GuardrailStandIn(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def cosmos2_5_predict() -> Cosmos2_5_PredictBasePipeline:
    """Cosmos Predict 2.5 (image, video or text to world): the same tiny transformer, UniPC with flow sigmas."""
    torch.manual_seed(0)
    pipe = Cosmos2_5_PredictBasePipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=_transformer(),
        vae=_vae(),
        scheduler=UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=5.0),
        safety_checker=GuardrailStandIn(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def cosmos_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 9-frame, 32 x 32 image-to-world run at CFG 3."""
    embeds = torch.randn(2, TEXT_TOKENS, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    return {
        "image": image(seed, SIZE),
        "prompt_embeds": embeds[:1],
        "negative_prompt_embeds": embeds[1:],
        "height": SIZE,
        "width": SIZE,
        "num_frames": 9,
        "num_inference_steps": 4,
        "guidance_scale": CFG,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


FAMILIES = {
    "cosmos2": Family("cosmos2", cosmos2_video2world, cosmos_call),
    "cosmos2.5": Family("cosmos2.5", cosmos2_5_predict, cosmos_call),
}
