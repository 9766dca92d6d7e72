"""Quick start: a Wan 2.1 image-to-video clip with ALG, on a GPU."""

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import export_to_video, load_image

import alg_guidance as alg


def generate(
    model="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",  # a Hugging Face model id or a local directory
    image="input.png",
    prompt="a boat sails out to sea",
    height=480,
    width=832,
    num_frames=81,
    device="cuda",
):
    """Sample `model` from `image` and `prompt` with the wan2.1 preset and write alg.mp4."""
    pipe = DiffusionPipeline.from_pretrained(model, dtype=torch.bfloat16).to(device)
    with alg.enable(pipe, "wan2.1"):  # a preset name, a dict, an ALGConfig or a YAML/JSON path
        video = pipe(
            image=load_image(image),
            prompt=prompt,
            height=height,
            width=width,
            num_frames=num_frames,
            guidance_scale=5.0,
        )
    export_to_video(video.frames[0], "alg.mp4", fps=16)


if __name__ == "__main__":
    generate()
