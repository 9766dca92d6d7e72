"""`alg-guidance generate`: sample a video with ALG, and with `--compare` the same seed without it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ..config import ALGConfig
from ..generation import (
    check_offload,
    load_pipeline,
    pipeline_arguments,
    read_model_index,
    resolve_device,
    resolve_dtype,
    sample_video,
    takes_prompt,
)
from ..video import check_output_file
from .options import ConfigOption, PresetOption, SetOption, chosen_config, image_file, path_check


class DType(str, Enum):
    """Weight dtypes; `auto` is bfloat16 on CUDA and XPU, float32 elsewhere."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Offload(str, Enum):
    """CPU offloading modes (see `alg_guidance.generation.load_pipeline`)."""

    none = "none"
    model = "model"
    sequential = "sequential"
    group = "group"


def _mp4_file(path: Path) -> None:
    """Refuse an output that is not an `.mp4` file in an existing folder (raises ValueError or OSError)."""
    if path.suffix != ".mp4":
        raise ValueError(f"the output must be an .mp4 file, got {path.name}")
    check_output_file(path)


def generate(
    model: Annotated[str, typer.Argument(help="A diffusers model directory (save_pretrained) or a Hub model id.")],
    image: Annotated[
        Path,
        typer.Argument(help="The input image.", exists=True, dir_okay=False, callback=path_check(image_file)),
    ],
    prompt: Annotated[str | None, typer.Option(help="The text prompt; required by models with a text encoder.")] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="The negative prompt.")] = None,
    preset: PresetOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    seed: Annotated[int, typer.Option(help="The random seed (CPU generator: the same noise on every device).")] = 0,
    steps: Annotated[int | None, typer.Option(min=1, help="Sampling steps (the pipeline's default if unset).")] = None,
    height: Annotated[int | None, typer.Option(min=16, help="Video height (the pipeline's default if unset).")] = None,
    width: Annotated[int | None, typer.Option(min=16, help="Video width (the pipeline's default if unset).")] = None,
    frames: Annotated[int | None, typer.Option(min=1, help="Frame count (the pipeline's default if unset).")] = None,
    fps: Annotated[float, typer.Option(min=1, help="Frames per second of the written video.")] = 16.0,
    guidance_scale: Annotated[
        float | None, typer.Option(help="The CFG scale (the pipeline's default if unset).")
    ] = None,
    dtype: Annotated[DType, typer.Option(help="Weight dtype.")] = DType.auto,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N, mps or xpu.")] = "auto",
    offload: Annotated[Offload, typer.Option(help="CPU offloading onto an accelerator.")] = Offload.none,
    offline: Annotated[bool, typer.Option(help="Use local files only, as HF_HUB_OFFLINE=1 does.")] = False,
    out: Annotated[
        Path,
        typer.Option(
            help="The MP4 to write, in an existing folder; other outputs are named after it.",
            callback=path_check(_mp4_file),
        ),
    ] = Path("alg.mp4"),
    gif: Annotated[bool, typer.Option(help="Also write a GIF beside each MP4.")] = False,
    save_frames: Annotated[bool, typer.Option(help="Also write the frames as PNGs into <out>-frames/.")] = False,
    compare: Annotated[
        bool,
        typer.Option(
            help="Also sample the same seed without ALG: <out>-no-alg.mp4, <out>-compare.mp4 side by side, "
            "and the metrics of both in <out>-metrics.json."
        ),
    ] = False,
) -> None:
    """Sample a video with ALG from a diffusers image-to-video model.

    Every input is checked before the model loads.
    """
    chosen = chosen_config(preset, config, overrides, default=None)
    target = resolve_device(device)
    weights = resolve_dtype(dtype.value, target)
    check_offload(offload.value, target)
    _check_prompt(model, read_model_index(model, offline=offline), prompt, negative_prompt)

    from ..adapters.lookup import find_adapter
    from ..integrations.diffusers import enable  # imports diffusers: only once the input is known to be good

    pipe = load_pipeline(model, dtype=weights, device=target, offload=offload.value, offline=offline)
    if chosen is None:
        chosen = chosen_config(find_adapter(pipe).preset, None, overrides)
    picture = _load_rgb(image)
    arguments = pipeline_arguments(
        pipe,
        image=picture,
        prompt=prompt,
        negative_prompt=negative_prompt,
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        fps=fps,
    )
    baseline = sample_video(pipe, arguments, seed=seed, description="sampling without ALG") if compare else None
    with enable(pipe, chosen) as handle:
        typer.echo(f"ALG: adapter {handle.adapter.name}, {_describe(handle.config)}", err=True)
        guided = sample_video(pipe, arguments, seed=seed, description="sampling with ALG")
    written = _write(out, guided, fps, gif=gif, save_frames=save_frames)
    if baseline is not None:
        written += _write(_beside(out, "no-alg"), baseline, fps, gif=gif, save_frames=save_frames)
        written += _compare(out, guided, baseline, fps, np.asarray(picture), gif=gif)
    typer.echo("wrote " + ", ".join(str(path) for path in written))


def _check_prompt(model: str, model_index: dict, prompt: str | None, negative_prompt: str | None) -> None:
    pipeline = model_index.get("_class_name", "its pipeline")
    if takes_prompt(model_index) and prompt is None:
        raise typer.BadParameter(f"{model} ({pipeline}) has a text encoder and needs a prompt", param_hint="--prompt")
    if not takes_prompt(model_index) and (prompt is not None or negative_prompt is not None):
        raise typer.BadParameter(
            f"{model} ({pipeline}) has no text encoder and takes no prompt", param_hint="--prompt/--negative-prompt"
        )


def _describe(config: ALGConfig) -> str:
    parameters = config.model_dump()
    return f"filter {parameters['filter']}, schedule {parameters['schedule']}, {config.space} space"


def _load_rgb(path: Path):
    from PIL import Image

    with Image.open(path) as picture:
        return picture.convert("RGB")


def _beside(out: Path, suffix: str, extension: str = ".mp4") -> Path:
    return out.with_name(f"{out.stem}-{suffix}{extension}")


def _write(out: Path, frames: np.ndarray, fps: float, *, gif: bool, save_frames: bool = False) -> list[Path]:
    from ..video import write_frames, write_gif, write_video

    written = [write_video(out, frames, fps)]
    if gif:
        written.append(write_gif(out.with_suffix(".gif"), frames, fps))
    if save_frames:
        folder = _beside(out, "frames", "")
        write_frames(folder, frames)
        written.append(folder)
    return written


def _compare(
    out: Path, guided: np.ndarray, baseline: np.ndarray, fps: float, image: np.ndarray, *, gif: bool
) -> list[Path]:
    from ..metrics import evaluate_frames
    from ..reports import format_table, write_json
    from ..video import side_by_side

    results = [
        evaluate_frames(guided, fps, image=image, name="ALG"),
        evaluate_frames(baseline, fps, image=image, name="without ALG"),
    ]
    typer.echo(format_table(results))
    both = side_by_side([guided, baseline], ["ALG", "without ALG"])
    return [*_write(_beside(out, "compare"), both, fps, gif=gif), write_json(results, _beside(out, "metrics", ".json"))]
