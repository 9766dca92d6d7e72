"""Tiny random-weight LTX-2 pipelines (video and audio), built from configs in code (nothing is downloaded).

The Gemma text encoder and tokenizer are left out: runs pass prompt embeddings (the text encoder's stacked hidden
states, `TEXT_DIM * TEXT_LAYERS` features a token) and their attention masks; the pipeline's own text connectors
turn them into the video and audio prompts. The vocoder is left out too: runs return latents. The video VAE
compresses 2x in space and in time, so a 32 x 32, 5-frame video (the pipeline needs multiples of 32) is 3 latent
frames of 16 x 16, packed into 768 tokens of 4 channels; the audio of those 5 frames at 25 fps is 5 latent steps
of 2 channels x 2 mel bins.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2ConditionPipeline,
    LTX2ImageToVideoPipeline,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

from .families import Family
from .tiny_wan import image

LATENT_CHANNELS = 4
TEXT_DIM = 16
TEXT_LAYERS = 2
TEXT_TOKENS = 8
CFG = 3.0
AUDIO_CFG = 5.0
SIZE = 32
LATENT_SIZE = 16
NUM_FRAMES = 5
LATENT_FRAMES = 3


def _transformer() -> LTX2VideoTransformer3DModel:
    return LTX2VideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=TEXT_DIM,
        rope_double_precision=False,
        rope_type="split",
    )


def _connectors() -> LTX2TextConnectors:
    return LTX2TextConnectors(
        caption_channels=TEXT_DIM,
        text_proj_in_factor=TEXT_LAYERS,
        video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )


def _vae() -> AutoencoderKLLTX2Video:
    """Random weights; per-channel latent statistics away from 0 and 1, so the pipeline's normalization matters."""
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8,),
        decoder_block_out_channels=(8,),
        layers_per_block=(1,),
        decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False),
        downsample_type=("spatial",),
        upsample_residual=(False,),
        upsample_factor=(1,),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    vae.latents_mean.uniform_(-0.5, 0.5)
    vae.latents_std.uniform_(0.5, 2.0)
    return vae


def _audio_vae() -> AutoencoderKLLTX2Audio:
    return AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )


def ltx2_i2v() -> LTX2ImageToVideoPipeline:
    """`LTX2ImageToVideoPipeline` without text encoder, tokenizer and vocoder."""
    return _pipeline(LTX2ImageToVideoPipeline)


def ltx2_condition() -> LTX2ConditionPipeline:
    """`LTX2ConditionPipeline` without text encoder, tokenizer and vocoder: images condition latent frames."""
    return _pipeline(LTX2ConditionPipeline)


def _pipeline(pipeline_class: type) -> Any:
    torch.manual_seed(0)
    pipe = pipeline_class(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(),
        audio_vae=_audio_vae(),
        text_encoder=None,
        tokenizer=None,
        connectors=_connectors(),
        transformer=_transformer(),
        vocoder=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _mask(valid: int) -> torch.Tensor:
    """An attention mask whose first `valid` of the `TEXT_TOKENS` tokens are valid."""
    return (torch.arange(TEXT_TOKENS) < valid).long()[None]


def i2v_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Arguments for a 4-step, 5-frame, 32 x 32 run at CFG 3 (audio 5), STG and modality guidance off."""
    embeds = torch.randn(2, TEXT_TOKENS, TEXT_DIM * TEXT_LAYERS, generator=torch.Generator().manual_seed(seed))
    return {
        "image": image(seed, size=SIZE),
        "prompt_embeds": embeds[:1],
        "prompt_attention_mask": _mask(TEXT_TOKENS),
        "negative_prompt_embeds": embeds[1:],
        "negative_prompt_attention_mask": _mask(TEXT_TOKENS),
        "height": SIZE,
        "width": SIZE,
        "num_frames": NUM_FRAMES,
        "frame_rate": 25.0,
        "num_inference_steps": 4,
        "guidance_scale": CFG,
        "audio_guidance_scale": AUDIO_CFG,
        "stg_scale": 0.0,
        "audio_stg_scale": 0.0,
        "modality_scale": 1.0,
        "audio_modality_scale": 1.0,
        "guidance_rescale": 0.0,
        "audio_guidance_rescale": 0.0,
        "image_crf": 0,
        "generator": torch.Generator().manual_seed(seed),
        "output_type": "latent",
        **overrides,
    }


def first_frame(seed: int = 0) -> list[LTX2VideoCondition]:
    """One image at latent index 0 (no H.264 re-compression)."""
    return [LTX2VideoCondition(frames=image(seed, size=SIZE), index=0, crf=0)]


def keyframes(seed: int = 0) -> list[LTX2VideoCondition]:
    """An image at latent index 0 and another at the last latent frame (a keyframe, appended after the video)."""
    return [*first_frame(seed), LTX2VideoCondition(frames=image(seed + 1, size=SIZE), index=LATENT_FRAMES - 1, crf=0)]


def condition_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """`i2v_call` for `LTX2ConditionPipeline`, conditioned on `first_frame`."""
    call = i2v_call(seed, **overrides)
    del call["image"], call["image_crf"]
    return {"conditions": first_frame(seed), **call}


def condition_keyframes_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """`condition_call` conditioned on `keyframes`."""
    return condition_call(seed, **{"conditions": keyframes(seed), **overrides})


FAMILIES = {
    "ltx2": Family("ltx2", ltx2_i2v, i2v_call),
    "ltx2-condition": Family("ltx2-condition", ltx2_condition, condition_call),
    "ltx2-condition-keyframes": Family("ltx2-condition", ltx2_condition, condition_keyframes_call),
}
