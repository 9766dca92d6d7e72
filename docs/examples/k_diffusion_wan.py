"""Wan 2.1 image-to-video sampled by a k-diffusion sampler with ALG, then decoded and saved.

Set MODEL to the Wan 2.1 I2V checkpoint to sample the real model on a GPU. Left at None, the example builds a tiny
random-weight Wan 2.1 pipeline in code and samples a 32 x 32 clip on the CPU in seconds (that is how the
documentation's tests run it); the video is noise, the code path is the real one.
"""

import numpy as np
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel
from diffusers.utils import export_to_video, load_image
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

import alg_guidance as alg

MODEL = None  # "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"


def main() -> None:
    """Build the conditioning from the pipeline, sample with DPM-Solver++(2M) and ALG, decode, save."""
    pipe, call = real_model(MODEL) if MODEL else tiny_model()
    setup = alg.k_diffusion.from_pipeline(
        pipe, **call, guidance_scale=5.0, num_inference_steps=30, generator=torch.Generator().manual_seed(0)
    )
    sampling = alg.k_diffusion.load_sampling()  # k-diffusion's own sampler module
    guided = setup.guide("wan2.1")  # the preset: factor 0.4, the first 20 % of the steps
    latents = sampling.sample_dpmpp_2m(guided, setup.noise * setup.sigmas[0], setup.sigmas)
    frames = setup.decode(latents)[0]
    export_to_video(frames, "wan-alg-dpmpp-2m.mp4", fps=16)


def real_model(model: str) -> tuple[WanImageToVideoPipeline, dict]:
    """The Wan 2.1 I2V checkpoint on a GPU, and a 480p, 81-frame call."""
    pipe = WanImageToVideoPipeline.from_pretrained(model, dtype=torch.bfloat16).to("cuda")
    image = load_image("input.png").resize((832, 480))
    return pipe, {
        "image": image,
        "prompt": "a boat sails across the lake",
        "height": 480,
        "width": 832,
        "num_frames": 81,
    }


def tiny_model() -> tuple[WanImageToVideoPipeline, dict]:
    """A Wan 2.1 I2V pipeline with tiny random weights, and prompt embeddings in place of a text encoder."""
    torch.manual_seed(0)
    clip = CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=4
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        image_encoder=CLIPVisionModelWithProjection(clip),
        image_processor=CLIPImageProcessorPil(crop_size=32, size=32),
        transformer=WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=36,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=1,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            image_dim=4,
        ),
        vae=AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    embeds = torch.randn(2, 8, 32)
    return pipe, {
        "image": Image.fromarray(pixels),
        "prompt_embeds": embeds[:1],
        "negative_prompt_embeds": embeds[1:],
        "height": 32,
        "width": 32,
        "num_frames": 5,
    }


if __name__ == "__main__":
    main()
