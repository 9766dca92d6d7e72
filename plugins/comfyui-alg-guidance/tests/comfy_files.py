"""Tiny random-weight model files for ComfyUI's loader nodes, in the key layout of the released files.

Each writer builds the model with ComfyUI's own classes at tiny sizes, draws seeded random weights and saves the
state dict as safetensors, so that ComfyUI's loaders detect the model and build it from the file as they do for the
released one. The UNets keep every size ComfyUI's detection reads from the file; the encoders keep the widths the
video models read (Wan's 4096-wide text and 1280-wide CLIP image features) and shrink the rest through the configs
in `TEXT_ENCODER_CONFIGS` and `CLIP_VISION_H`, which the test hands to ComfyUI (see `test_workflows.py`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import comfy.clip_model
import comfy.ldm.lightricks.vae.causal_video_autoencoder as ltx_vae
import comfy.ldm.wan.vae
import comfy.ops
import comfy.supported_models
import comfy.text_encoders.t5
import sentencepiece
import torch
from safetensors.torch import save_file

COMFY = Path(comfy.supported_models.__file__).parent

WAN_UNET = {"image_model": "wan2.1", "dim": 128, "ffn_dim": 32, "num_heads": 1, "num_layers": 1, "in_dim": 36,
            "out_dim": 16, "freq_dim": 256}  # fmt: skip
"""Wan 2.1 I2V and each Wan 2.2 A14B expert: ComfyUI detects `num_heads` as `dim // 128`; text_dim stays 4096."""

LTXV_TRANSFORMER = {"image_model": "ltxv", "in_channels": 128, "num_attention_heads": 32, "attention_head_dim": 2,
                    "cross_attention_dim": 64, "caption_channels": 32, "num_layers": 1}  # fmt: skip
"""LTX-Video: ComfyUI detects 32 heads of `to_k.shape[0] // 32` channels, and reads `caption_channels` (else 4096)
from the checkpoint's `config` metadata, where LTX checkpoints can keep their transformer and VAE settings."""

LTXV_VAE = {"dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 128, "patch_size": 4,
            "blocks": [["res_x", 1], ["compress_all", 1], ["compress_all", 1], ["compress_all", 1], ["res_x", 1]],
            "encoder_base_channels": 8, "decoder_base_channels": 8, "norm_layer": "pixel_norm",
            "latent_log_var": "uniform", "use_quant_conv": False, "causal_decoder": False}  # fmt: skip
"""LTX-Video's VAE (8x temporal, 32x spatial compression into 128 channels), 8 channels wide."""

UMT5_XXL = {"num_layers": 1, "d_ff": 16, "num_heads": 1, "d_kv": 8, "vocab_size": 64}
"""Overrides on ComfyUI's `umt5_config_xxl.json` (Wan): 4096 wide, one layer, the tiny tokenizer's vocabulary."""

T5_XXL = {"num_layers": 1, "d_ff": 16, "num_heads": 1, "d_kv": 8, "d_model": 32}
"""Overrides on ComfyUI's `t5_config_xxl.json` (LTX-Video): the vocabulary of ComfyUI's own T5 tokenizer."""

TEXT_ENCODER_CONFIGS = {"umt5xxl_model_config": UMT5_XXL, "t5xxl_model_config": T5_XXL}
"""ComfyUI's own override of a text encoder's config: `model_options["<model name>_model_config"]`."""

CLIP_VISION_H = {**json.loads((COMFY / "clip_vision_config_h.json").read_text()), "num_hidden_layers": 2,
                 "intermediate_size": 16, "num_attention_heads": 1, "image_size": 28, "projection_dim": 16}  # fmt: skip
"""ComfyUI's CLIP-H vision config, 1280 wide (Wan's image embedding reads 1280), two layers (Wan reads the
penultimate), 2x2 patches."""

T5_DETECTED_BY = "encoder.block.23.layer.1.DenseReluDense.wi_1.weight"
"""The key ComfyUI recognises a T5-XXL by (its 24th block's feed-forward, 10240 wide)."""
CLIP_H_DETECTED_BY = "vision_model.encoder.layers.30.layer_norm1.weight"
"""The key ComfyUI recognises a CLIP-H vision model by (its 31st layer)."""

TOKENIZER_CHARACTERS = "abcdefghijklmnopqrstuvwxyz ,."
"""The characters the tiny UMT5 tokenizer knows; any other becomes its unknown token."""


def random_weights(module: torch.nn.Module, seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """The module's state dict with seeded random values in place of its (possibly uninitialised) floats: normal
    with standard deviation `scale`, about 1 for the scales of norm layers."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key, value in module.state_dict().items():
        if value.is_floating_point():
            norm_scale = "norm" in key and key.endswith(".weight") and value.ndim == 1
            value = torch.randn(value.shape, generator=generator) * scale + (1.0 if norm_scale else 0.0)
        weights[key] = value
    return weights


def wan21_i2v(path: Path, seed: int) -> dict[str, torch.Tensor]:
    """Wan 2.1 I2V's UNet: 16 latent + 4 mask + 16 image channels, and the CLIP image embedding `img_emb`."""
    return _wan_unet(path, comfy.supported_models.WAN21_I2V({**WAN_UNET, "model_type": "i2v"}), seed)


def wan22_a14b_expert(path: Path, seed: int) -> dict[str, torch.Tensor]:
    """A Wan 2.2 A14B I2V expert: 16 latent + 4 mask + 16 image channels and no CLIP image embedding, which ComfyUI
    detects as model type `t2v`."""
    return _wan_unet(path, comfy.supported_models.WAN21_T2V({**WAN_UNET, "model_type": "t2v"}), seed)


def _wan_unet(path: Path, config: Any, seed: int) -> dict[str, torch.Tensor]:
    config.set_inference_dtype(torch.float32, None)
    weights = random_weights(config.get_model({}).diffusion_model, seed)
    save_file(weights, path)
    return weights


def wan_lora(path: Path, unet: dict[str, torch.Tensor], seed: int, rank: int = 4) -> None:
    """A LoRA on every linear weight of the UNet's blocks, in the key format of the lightx2v LoRAs ComfyUI loads:
    `diffusion_model.<module>.lora_up.weight`, `.lora_down.weight`, `.alpha`."""
    generator = torch.Generator().manual_seed(seed)
    lora = {}
    for key, weight in unet.items():
        if key.startswith("blocks.") and key.endswith(".weight") and weight.ndim == 2:
            module = "diffusion_model." + key.removesuffix(".weight")
            lora[f"{module}.lora_up.weight"] = torch.randn(weight.shape[0], rank, generator=generator) * 0.05
            lora[f"{module}.lora_down.weight"] = torch.randn(rank, weight.shape[1], generator=generator) * 0.05
            lora[f"{module}.alpha"] = torch.tensor(float(rank))
    save_file(lora, path)


def wan_vae(path: Path, seed: int) -> None:
    """Wan 2.1's VAE (4x temporal, 8x spatial, 16 latent channels); ComfyUI reads its width from the file. Its
    weights are large enough for frames that differ visibly (WebP merges near-identical frames into one)."""
    vae = comfy.ldm.wan.vae.WanVAE(
        dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
        temperal_downsample=[False, True, True], dropout=0.0,
    )  # fmt: skip
    save_file(random_weights(vae, seed, scale=0.3), path)


def _t5(config_file: str, overrides: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    config = {**json.loads((COMFY / "text_encoders" / config_file).read_text()), **overrides}
    weights = random_weights(comfy.text_encoders.t5.T5(config, torch.float32, "cpu", comfy.ops.manual_cast), seed)
    weights[T5_DETECTED_BY] = torch.empty(10240, 0)  # the detection key, empty: it holds no weights
    return weights


def umt5_xxl(path: Path, seed: int) -> None:
    """Wan's UMT5-XXL text encoder, with its SentencePiece tokenizer in the file under `spiece_model`, where ComfyUI
    reads it from (its repackaged UMT5 files carry it): a character-level one trained here on
    `TOKENIZER_CHARACTERS`, with UMT5's ids 0 for padding and 1 for the end."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([TOKENIZER_CHARACTERS]), model_writer=model, model_type="char",
        vocab_size=UMT5_XXL["vocab_size"], hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        minloglevel=2,
    )  # fmt: skip
    weights = _t5("umt5_config_xxl.json", UMT5_XXL, seed)
    weights["spiece_model"] = torch.frombuffer(bytearray(model.getvalue()), dtype=torch.uint8)
    save_file(weights, path)


def t5_xxl(path: Path, seed: int) -> None:
    """LTX-Video's T5-XXL text encoder; ComfyUI tokenizes with its own T5 tokenizer files."""
    save_file(_t5("t5_config_xxl.json", T5_XXL, seed), path)


def clip_vision_h(path: Path, seed: int) -> None:
    """CLIP-H's vision tower, as Wan 2.1 I2V's `clip_vision_h.safetensors`."""
    model = comfy.clip_model.CLIPVisionModelProjection(CLIP_VISION_H, torch.float32, "cpu", comfy.ops.manual_cast)
    weights = random_weights(model, seed)
    weights[CLIP_H_DETECTED_BY] = torch.empty(0)  # the detection key, empty: it holds no weights
    save_file(weights, path)


def ltxv_checkpoint(path: Path, seed: int) -> None:
    """An LTX-Video checkpoint: the transformer under `model.diffusion_model.`, the VAE under `vae.`, the caption
    width and the VAE's config in the `config` metadata; no text encoder (LTX-Video's checkpoints leave it to a
    CLIPLoader)."""
    config = comfy.supported_models.LTXV(dict(LTXV_TRANSFORMER))
    config.set_inference_dtype(torch.float32, None)
    transformer = random_weights(config.get_model({}).diffusion_model, seed)
    vae = random_weights(ltx_vae.VideoVAE(config=LTXV_VAE), seed + 1)
    weights = {f"model.diffusion_model.{key}": value for key, value in transformer.items()}
    weights.update({f"vae.{key}": value for key, value in vae.items()})
    metadata = {"transformer": {"caption_channels": LTXV_TRANSFORMER["caption_channels"]}, "vae": LTXV_VAE}
    save_file(weights, path, metadata={"config": json.dumps(metadata)})
