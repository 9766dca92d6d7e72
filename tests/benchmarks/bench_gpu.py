"""GPU benchmarks of alg-guidance's budgets, run through the device tool (see docs/benchmarks.md).

1. Filters on CUDA: the contract checks (device, dtype, no host-device synchronization) and the time of each
   builtin filter on a Wan 2.1 480p condition (20 channels, 6 latent frames, 60 x 104), bf16.
2. Hook overhead per denoiser call: a small Wan transformer called directly, and through the ALG hook at
   strength 0 (the pass-through) and in a filtered step; and the host-device synchronizations each makes.
3. End to end on a Wan-2.1-14B-shaped transformer (full width, fewer layers, 9,360 tokens): a 50-step run of
   the stock WanImageToVideoPipeline with plain CFG, with ALG (wan2.1 preset: 10 of 50 steps filtered) batched
   and with separate branch calls, and with ALG enabled at zero strength; time and peak GPU memory, each
   configuration run in interleaved rounds.
4. Pixel-space ALG under model CPU offload on CUDA equals pixel-space ALG without offload.

Usage: `python tests/benchmarks/bench_gpu.py --out DIR [--layers 10 --rounds 2]`; `--smoke` runs tiny sizes on
any device to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import unittest
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

import alg_guidance as alg
from alg_guidance.filters import Butterworth, Downsample, Gaussian
from alg_guidance.testing import FILTER_CHECKS

WAN_14B = {"num_attention_heads": 40, "attention_head_dim": 128, "ffn_dim": 13824, "text_dim": 4096, "image_dim": 1280}
SMOKE = {"num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64, "text_dim": 32, "image_dim": 32}


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    """Wall-clock milliseconds of `repeats` calls, each synchronized."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return times


def count_syncs(fn, device: torch.device) -> int | None:
    """How many host-device synchronizations one call of `fn` makes (CUDA's sync debug mode), None on CPU."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


def bench_filters(device: torch.device, smoke: bool) -> dict:
    """Contract checks on this device, and milliseconds per filter call on a Wan 480p condition."""
    filters = [Downsample(factor=0.4), Gaussian(sigma=1.0), Butterworth(cutoff=0.4)]
    checks = {}
    for filter_ in filters:
        passed, skipped = [], []
        for check in FILTER_CHECKS:
            try:
                check(filter_)
                passed.append(check.__name__)
            except unittest.SkipTest:
                skipped.append(check.__name__)
        checks[filter_.kind] = {"passed": passed, "skipped": skipped}
    shape = (1, 20, 2, 12, 16) if smoke else (1, 20, 6, 60, 104)
    condition = torch.randn(shape, device=device, dtype=torch.bfloat16)
    timings = {}
    for filter_ in filters:
        for strength in (1.0, 0.5):
            filter_(condition, strength)
            times = timed(lambda f=filter_, s=strength: f(condition, s), 50, device)
            timings[f"{filter_.kind}@{strength}"] = statistics.median(times)
    return {"shape": list(shape), "checks": checks, "median_ms": timings}


def wan_pipeline(layers: int, dims: dict, device: torch.device) -> WanImageToVideoPipeline:
    """The stock Wan 2.1 I2V pipeline with random weights: a 14B-wide transformer of `layers` blocks."""
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        in_channels=36,
        out_channels=16,
        freq_dim=256,
        num_layers=layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        **dims,
    ).to(device, torch.bfloat16)
    vision = CLIPVisionConfig(
        hidden_size=dims["image_dim"],
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,
        patch_size=14,
        projection_dim=dims["image_dim"],
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        image_encoder=CLIPVisionModelWithProjection(vision).to(device),
        image_processor=CLIPImageProcessorPil(crop_size=224, size=224),
        transformer=transformer,
        vae=AutoencoderKLWan().to(device),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def small_transformer_call(device: torch.device) -> tuple[WanImageToVideoPipeline, Callable[[], None]]:
    """A one-block Wan pipeline, and one call of its transformer as the pipeline's cond branch makes it."""
    pipe = wan_pipeline(1, SMOKE, device)
    inputs = {
        "hidden_states": torch.randn(1, 36, 2, 8, 8, device=device, dtype=torch.bfloat16),
        "timestep": torch.tensor([500.0], device=device),
        "encoder_hidden_states": torch.randn(1, 8, 32, device=device, dtype=torch.bfloat16),
        "encoder_hidden_states_image": torch.randn(1, 4, 32, device=device, dtype=torch.bfloat16),
        "return_dict": False,
    }
    pipe.scheduler.set_timesteps(50, device=device)
    pipe._guidance_scale = 5.0

    def call() -> None:
        with torch.no_grad(), pipe.transformer.cache_context("cond"):
            pipe.transformer(**inputs)

    return pipe, call


def bench_hook_overhead(device: torch.device) -> dict:
    """Milliseconds per call of a small Wan transformer: direct, through the hook at strength 0, and filtered."""
    pipe, call = small_transformer_call(device)
    result = {"direct_ms": statistics.median(timed(call, 300, device)), "syncs_direct": count_syncs(call, device)}
    for label, config in [("passthrough", {"kind": "constant", "value": 0.0}), ("filtered_cond", "constant")]:
        with alg.enable(pipe, {"preset": "wan2.1", "schedule": config}):
            call()
            result[f"{label}_ms"] = statistics.median(timed(call, 300, device))
            result[f"syncs_{label}"] = count_syncs(call, device)
    result["passthrough_overhead_ms"] = result["passthrough_ms"] - result["direct_ms"]
    result["filtered_cond_overhead_ms"] = result["filtered_cond_ms"] - result["direct_ms"]
    return result


def reset_peak(device: torch.device, count: list[int]) -> None:
    """Reset CUDA's peak-memory counter at the first denoiser call of a run."""
    if device.type == "cuda" and not count:
        torch.cuda.reset_peak_memory_stats()


def bench_end_to_end(device: torch.device, layers: int, rounds: int, smoke: bool) -> dict:
    """Time and peak memory of 50-step Wan runs: plain CFG, ALG batched, ALG separate, ALG at zero strength."""
    pipe = wan_pipeline(layers, SMOKE if smoke else WAN_14B, device)
    height, width, frames = (64, 64, 5) if smoke else (480, 832, 21)
    image = Image.new("RGB", (width, height), (120, 80, 200))
    text_dim = (SMOKE if smoke else WAN_14B)["text_dim"]
    generator = torch.Generator().manual_seed(0)
    embeds = torch.randn(2, 512, text_dim, generator=generator).to(device, torch.bfloat16)
    steps = 10 if smoke else 50

    def run():
        return pipe(
            image=image,
            prompt_embeds=embeds[:1],
            negative_prompt_embeds=embeds[1:],
            height=height,
            width=width,
            num_frames=frames,
            num_inference_steps=steps,
            guidance_scale=5.0,
            output_type="latent",
            generator=torch.Generator(device).manual_seed(0),
        ).frames

    configs = {
        "plain_cfg": None,
        "alg_batched": alg.resolve_config("wan2.1"),
        "alg_separate": alg.resolve_config("wan2.1").merge({"batch_branches": False}),
        "alg_zero_strength": alg.resolve_config("wan2.1").merge({"schedule": {"kind": "constant", "value": 0.0}}),
    }
    seconds = {name: [] for name in configs}
    peaks = {}
    evaluations = {}
    run()  # warm-up
    for _ in range(rounds):
        for name, config in configs.items():
            handle = alg.enable(pipe, config) if config is not None else None
            count: list[int] = []
            counter = pipe.transformer.proj_out
            hooks = [
                counter.register_forward_pre_hook(lambda m, a, count=count: count.append(a[0].shape[0])),
                # the denoising loop's peak: reset once the VAE has encoded the condition
                pipe.transformer.register_forward_pre_hook(lambda m, a, count=count: reset_peak(device, count)),
            ]
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
                peaks[name] = torch.cuda.max_memory_allocated() / 2**30
            seconds[name].append(time.perf_counter() - start)
            for hook in hooks:
                hook.remove()
            evaluations[name] = sum(count)
            if handle is not None:
                handle.disable()
    plain = statistics.median(seconds["plain_cfg"])
    active = sum(1 for i in range(steps) if i / (steps - 1) <= 0.2)
    fraction = active / steps
    return {
        "layers": layers,
        "shape": {"height": height, "width": width, "frames": frames, "steps": steps},
        "seconds": seconds,
        "median_seconds": {name: statistics.median(values) for name, values in seconds.items()},
        "ratio_to_plain": {name: statistics.median(values) / plain for name, values in seconds.items()},
        "expected_ratio_1_plus_f_over_2": 1 + fraction / 2,
        "filtered_fraction": fraction,
        "model_evaluations": evaluations,
        "peak_gib": peaks,
    }


def check_offloaded_pixel_space(device: torch.device) -> dict:
    """Pixel-space ALG on a tiny Wan 2.1 under model CPU offload gives the result it gives without offload.

    Encoding the filtered image runs the VAE mid-call, and its offload hook sends the transformer to the CPU;
    the engine must bring it back before the transformer runs again.
    """
    from tests.support import tiny_wan

    outputs = {}
    for offload in (False, True):
        pipe = tiny_wan.wan21()
        if offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        kwargs = tiny_wan.call_kwargs()
        for name in ("prompt_embeds", "negative_prompt_embeds"):
            kwargs[name] = kwargs[name].to(device)
        with alg.enable(pipe, {"preset": "wan2.1", "space": "pixel"}):
            outputs[offload] = pipe(**kwargs).frames.float().cpu()
    difference = (outputs[True] - outputs[False]).abs().max().item()
    return {"max_abs_difference_offload_vs_not": difference, "equal": torch.equal(outputs[True], outputs[False])}


PARTS = ("filters", "hook", "offloaded_pixel_space", "end_to_end")


def main() -> None:
    """Run the benchmarks and write results.json to --out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which measurements to run (all by default)"
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "torch": torch.__version__}
    parts = {
        "filters": lambda: bench_filters(device, args.smoke),
        "hook": lambda: bench_hook_overhead(device),
        "offloaded_pixel_space": lambda: check_offloaded_pixel_space(device),
        "end_to_end": lambda: bench_end_to_end(device, args.layers, args.rounds, args.smoke),
    }
    with torch.no_grad():
        for part in args.parts:
            try:
                results[part] = parts[part]()
            except Exception as error:  # report and go on to the other measurements
                results[part] = {"error": f"{type(error).__name__}: {error}"}
            print(json.dumps(results[part], indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
