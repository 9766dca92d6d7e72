"""How close bf16 ALG comes to float32 ALG: alg-guidance's arithmetic against the reference code's.

The stock Wan 2.1 pipeline with a Wan-2.1-14B-wide transformer (random weights) samples the same video with the
`wan2.1` preset three ways:

- float32: transformer in float32, ALG through `alg.enable` (the target);
- ours: transformer in bf16, ALG through `alg.enable` (the float32 condition filtered and cast once; the cond
  prediction handed back as `c_lp + (u_orig - u_lp)`, computed in float32 and rounded once);
- reference arithmetic: transformer in bf16, a denoising loop written here the way the official ALG pipelines
  compute: `[u_orig, u_lp, c_lp]` in one batch, the condition filtered in float32 and cast with the latents, and
  `u_orig + w * (c_lp - u_lp)` in bf16.

Each is compared with float32 by the relative L2 error of the final latents; plain CFG in bf16 against plain CFG in
float32 is given for scale, and the reference loop in float32 against `alg.enable` in float32 checks that the two
compute the same method. Usage: `python tests/benchmarks/bench_precision.py --out DIR [--layers 4]`; `--smoke`
runs tiny sizes on any device.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image

import alg_guidance as alg
from tests.benchmarks.bench_gpu import SMOKE, WAN_14B, wan_pipeline


def relative_error(x: torch.Tensor, target: torch.Tensor) -> float:
    """`||x - target|| / ||target||`, in float64."""
    return ((x.double() - target.double()).norm() / target.double().norm()).item()


def reference_loop(pipe, arguments: dict, config: alg.ALGConfig) -> torch.Tensor:
    """The official pipelines' arithmetic on the same inputs: one batch of three, combined in the model's dtype."""
    device, dtype = pipe._execution_device, pipe.transformer.dtype
    image = pipe.video_processor.preprocess(arguments["image"], arguments["height"], arguments["width"])
    latents, condition = pipe.prepare_latents(
        image.to(device, torch.float32),
        1,
        pipe.vae.config.z_dim,
        arguments["height"],
        arguments["width"],
        arguments["num_frames"],
        torch.float32,
        device,
        torch.Generator(device).manual_seed(0),
    )
    image_embeds = pipe.encode_image(arguments["image"], device).to(dtype)
    text, negative = arguments["prompt_embeds"], arguments["negative_prompt_embeds"]
    scale = arguments["guidance_scale"]
    pipe.scheduler.set_timesteps(arguments["num_inference_steps"], device=device)
    timesteps = pipe.scheduler.timesteps
    for index, t in enumerate(timesteps):
        state = alg.StepState.from_step(index, len(timesteps))
        strength = config.schedule(state)
        conditions = [condition, condition]
        prompts = [negative, text]
        if strength > 0:
            low_passed = config.filter(condition, strength)  # float32, as the reference filters it
            conditions, prompts = [condition, low_passed, low_passed], [negative, negative, text]
        count = len(conditions)
        hidden = torch.cat([torch.cat([latents] * count), torch.cat(conditions)], dim=1).to(dtype)
        prediction = pipe.transformer(
            hidden_states=hidden,
            timestep=t.expand(count),
            encoder_hidden_states=torch.cat(prompts),
            encoder_hidden_states_image=image_embeds.repeat(count, 1, 1),
            return_dict=False,
        )[0]
        if count == 3:
            u_orig, u_lp, c_lp = prediction.chunk(3)
            guided = u_orig + scale * (c_lp - u_lp)
        else:
            u, c = prediction.chunk(2)
            guided = u + scale * (c - u)
        latents = pipe.scheduler.step(guided, t, latents, return_dict=False)[0]
    return latents


def main() -> None:
    """Sample the runs and write precision.json to --out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random weights, image and prompts")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dims = SMOKE if args.smoke else WAN_14B
    height, width, frames = (64, 64, 5) if args.smoke else (480, 832, 9)
    steps = 10 if args.smoke else 50
    generator = torch.Generator().manual_seed(args.seed)
    embeds = torch.randn(2, 512, dims["text_dim"], generator=generator).to(device)
    pixels = torch.Generator().manual_seed(args.seed + 1)
    image = Image.fromarray(
        (torch.rand(height, width, 3, generator=pixels) * 255).to(torch.uint8).numpy()
    )  # detail at every frequency, as ALG's low-pass is meant to remove
    config = alg.resolve_config("wan2.1")

    pipe = wan_pipeline(args.layers, dims, device)
    pipe.transformer.to(torch.float32)
    arguments = {
        "image": image,
        "height": height,
        "width": width,
        "num_frames": frames,
        "num_inference_steps": steps,
        "guidance_scale": 5.0,
        "output_type": "latent",
    }
    latents = {}
    with torch.no_grad():
        for precision in ("float32", "bf16"):
            dtype = torch.float32 if precision == "float32" else torch.bfloat16
            if precision == "bf16":
                pipe.transformer.to(torch.bfloat16)
            call = {
                **arguments,
                "prompt_embeds": embeds[:1].to(dtype),
                "negative_prompt_embeds": embeds[1:].to(dtype),
            }
            latents[f"plain_{precision}"] = pipe(**call, generator=torch.Generator(device).manual_seed(0)).frames
            with alg.enable(pipe, config):
                latents[f"alg_{precision}"] = pipe(**call, generator=torch.Generator(device).manual_seed(0)).frames
            latents[f"reference_{precision}"] = reference_loop(pipe, call, config)
    target = latents["alg_float32"].float()
    results = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "layers": args.layers,
        "seed": args.seed,
        "shape": {"height": height, "width": width, "frames": frames, "steps": steps},
        "relative_error_to_float32_alg": {
            "ours_bf16": relative_error(latents["alg_bf16"], target),
            "reference_arithmetic_bf16": relative_error(latents["reference_bf16"], target),
        },
        "plain_cfg_bf16_to_float32": relative_error(latents["plain_bf16"], latents["plain_float32"]),
        "alg_float32_to_plain_float32": relative_error(target, latents["plain_float32"]),
        "reference_loop_float32_to_alg_float32": relative_error(latents["reference_float32"], target),
    }
    print(json.dumps(results, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"precision-seed{args.seed}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
