"""Tiny random-weight FramePack, SkyReels-V1-Hunyuan I2V and SkyReels-V2 diffusion-forcing I2V pipelines.

Built from configs in code; nothing is downloaded: text encoders and tokenizers are left out and the runs pass
prompt embeddings directly.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    HunyuanSkyreelsImageToVideoPipeline,
    HunyuanVideoFramepackPipeline,
    HunyuanVideoFramepackTransformer3DModel,
    HunyuanVideoTransformer3DModel,
    SkyReelsV2DiffusionForcingImageToVideoPipeline,
    SkyReelsV2Transformer3DModel,
    UniPCMultistepScheduler,
)
from transformers import SiglipImageProcessorPil

from .families import Family
from .tiny_hunyuan import (
    HUNYUAN_TRANSFORMER,
    LATENT_CHANNELS,
    SIGLIP_DIM,
    TRUE_CFG,
    hunyuan_vae,
    i2v_call,
    siglip_encoder,
)
from .tiny_wan import _transformer, _vae, call_kwargs, image

FRAMEPACK_EMBEDDED_GUIDANCE = 10.0
DF_CFG = 5.0


def framepack() -> HunyuanVideoFramepackPipeline:
    """FramePack: 4 latent channels, patch size 2, a SigLIP image encoder; 32 x 32 gives 4 x 4 latents.

    With `latent_window_size=2` a section is 2 latent frames (5 frames), so 9 frames are sampled in 2 sections.
    """
    vae = hunyuan_vae()
    torch.manual_seed(0)
    transformer = HunyuanVideoFramepackTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        patch_size=2,
        has_image_proj=True,
        image_proj_dim=SIGLIP_DIM,
        has_clean_x_embedder=True,
        **HUNYUAN_TRANSFORMER,
    )
    image_encoder = siglip_encoder()
    pipe = HunyuanVideoFramepackPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder_2=None,
        tokenizer_2=None,
        image_encoder=image_encoder,
        feature_extractor=SiglipImageProcessorPil(size={"height": 16, "width": 16}),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def skyreels_hunyuan() -> HunyuanSkyreelsImageToVideoPipeline:
    """SkyReels-V1-Hunyuan-I2V: 4 latent + 4 image-latent channels (no mask), guidance-embedding transformer."""
    vae = hunyuan_vae()
    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(in_channels=2 * LATENT_CHANNELS, patch_size=1, **HUNYUAN_TRANSFORMER)
    pipe = HunyuanSkyreelsImageToVideoPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None,
        tokenizer_2=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def skyreels_v2_df(inject_sample_info: bool = True) -> SkyReelsV2DiffusionForcingImageToVideoPipeline:
    """SkyReels-V2 diffusion forcing I2V: a 16-channel transformer taking `fps` (as the released DF checkpoints)."""
    torch.manual_seed(0)
    transformer = _transformer(
        16, image_dim=None, cls=SkyReelsV2Transformer3DModel, inject_sample_info=inject_sample_info
    )
    pipe = SkyReelsV2DiffusionForcingImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        transformer=transformer,
        vae=_vae(),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def framepack_call(seed: int = 0, true_cfg: bool = False, **overrides: Any) -> dict[str, Any]:
    """A 3-step, 9-frame (2 sections), 32 x 32 FramePack run with embedded guidance, decoded to a tensor.

    With `true_cfg`, also a negative prompt and `true_cfg_scale=TRUE_CFG` (and embedded guidance 1).
    """
    kwargs = i2v_call(seed, true_cfg=true_cfg, num_inference_steps=3, height=32, width=32, output_type="pt")
    if not true_cfg:
        kwargs["guidance_scale"] = FRAMEPACK_EMBEDDED_GUIDANCE
    return kwargs | {"latent_window_size": 2} | overrides


def framepack_true_cfg_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """`framepack_call` with true CFG."""
    return framepack_call(seed, true_cfg=True, **overrides)


def skyreels_hunyuan_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """A 4-step, 9-frame, 64 x 64 SkyReels-V1-Hunyuan run with true CFG (its default) and embedded guidance 1."""
    return i2v_call(seed, true_cfg=True, **overrides)


def df_call(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """A 4-step, 9-frame, 64 x 64 synchronous diffusion-forcing run with CFG `DF_CFG`."""
    return call_kwargs(seed, guidance_scale=DF_CFG, **overrides)


FAMILIES = {
    "hunyuanvideo-framepack": Family("hunyuanvideo-framepack", framepack, framepack_call),
    "hunyuanvideo-framepack-true-cfg": Family("hunyuanvideo-framepack", framepack, framepack_true_cfg_call),
    "hunyuanvideo-skyreels": Family("hunyuanvideo-skyreels", skyreels_hunyuan, skyreels_hunyuan_call),
    "skyreels-v2-df": Family("skyreels-v2-df", skyreels_v2_df, df_call),
}
__all__ = ["FAMILIES", "TRUE_CFG", "image"]
