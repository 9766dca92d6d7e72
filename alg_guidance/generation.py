"""Load a diffusers image-to-video pipeline and sample a video from it: the logic of `alg-guidance generate`.

`read_model_index` finds a model and reads its pipeline class and components before any weights load;
[`load_pipeline`][alg_guidance.generation.load_pipeline] reads a local model directory or the Hugging Face cache
(honouring `HF_HUB_OFFLINE`) onto a device, with optional CPU offloading;
[`pipeline_arguments`][alg_guidance.generation.pipeline_arguments] turns generic options into the arguments the
pipeline's own `__call__` takes; [`sample_video`][alg_guidance.generation.sample_video] runs it with a seed.
ALG is switched on around `sample_video` with [`alg.enable`][alg_guidance.integrations.diffusers.enable].
Needs the `diffusers` extra.

Examples:
    ```python
    pipe = load_pipeline("path/to/model", dtype=torch.bfloat16, device=resolve_device("cuda"))
    arguments = pipeline_arguments(pipe, image=image, prompt="a boat sails", num_frames=81)
    with alg.enable(pipe, "wan2.1"):
        frames = sample_video(pipe, arguments, seed=0)
    ```
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ALGError
from .video import to_uint8

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OFFLOADS = ("none", "model", "sequential", "group")
ACCELERATORS = ("cuda", "mps", "xpu")
TRUE_VALUES = {"1", "on", "yes", "true"}
# the frame rate of the output, under the name each pipeline gives it (LTX-Video, SVD); optional
FRAME_RATE_PARAMETERS = ("frame_rate", "fps")


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is switched off (`HF_HUB_OFFLINE`, read now and at huggingface_hub's import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_VALUES


def resolve_device(name: str) -> torch.device:
    """The device called `name` (`auto`, `cpu`, `cuda`, `cuda:1`, `mps`, `xpu`), checked to be available.

    `auto` is the first available of CUDA, MPS and the CPU.

    Raises:
        ALGError: The name is not a device, or the device is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ALGError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N, mps or xpu") from None
    if device.type == "cpu":
        return device
    if device.type not in ACCELERATORS:
        raise ALGError(f"device {name!r} is not supported; use auto, cpu, cuda, cuda:N, mps or xpu")
    backend = torch.backends.mps if device.type == "mps" else getattr(torch, device.type, None)
    if backend is None or not backend.is_available():
        raise ALGError(f"device {name!r} is not available: this PyTorch build or machine has no {device.type} device")
    if device.type != "mps" and device.index is not None and device.index >= backend.device_count():
        raise ALGError(f"device {name!r} does not exist: {backend.device_count()} {device.type} device(s) found")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The weights' dtype called `name` (`auto`, `float32`, `bfloat16`, `float16`).

    `auto` is bfloat16 on CUDA and XPU devices and float32 elsewhere.

    Raises:
        ALGError: An unknown name.
    """
    if name == "auto":
        return torch.bfloat16 if device.type in ("cuda", "xpu") else torch.float32
    if name not in DTYPES:
        raise ALGError(f"unknown dtype {name!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def check_offload(offload: str, device: torch.device) -> None:
    """Refuse an unknown offloading mode, or one that needs an accelerator on a CPU device.

    Raises:
        ALGError: `offload` is not one of `none`, `model`, `sequential`, `group`, or needs an accelerator.
    """
    if offload not in OFFLOADS:
        raise ALGError(f"unknown offload mode {offload!r}; use {', '.join(OFFLOADS)}")
    if offload != "none" and device.type == "cpu":
        raise ALGError(
            f"offload {offload!r} keeps weights on the CPU and moves them to an accelerator when needed; "
            f"it needs an accelerator device ({', '.join(ACCELERATORS)}), got cpu"
        )


def read_model_index(model: str | os.PathLike[str], *, offline: bool = False) -> dict[str, Any]:
    """The `model_index.json` of a diffusers model: its pipeline class and components, read before any weights.

    A local directory must hold the file; for a Hugging Face model id it is read from the cache, or downloaded
    alone while the Hub is on, so a wrong model is named before anything large loads.

    Args:
        model: A local model directory, or a model id such as `"Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"`.
        offline: Use local files only, as `HF_HUB_OFFLINE=1` (also honoured) does.

    Raises:
        ALGError: `model` is a file, a directory without `model_index.json`, neither a directory nor a model id,
            a model id that is not cached while the Hub is off or unreachable (the message says how to get it),
            that the Hub does not have, or whose model has no `model_index.json`; or the file is not JSON.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise ALGError(
                f"{model} is not a diffusers model directory: it has no model_index.json (save_pretrained writes one)"
            )
    elif path.exists():
        raise ALGError(f"{model} is a file; give a diffusers model directory or a Hugging Face model id")
    else:
        index = _hub_model_index(str(model), offline or hub_offline())
    try:
        return json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ALGError(f"{index} is not valid JSON: {error}") from None


def _hub_model_index(model: str, offline: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(model, "model_index.json", local_files_only=offline))
    except HFValidationError:
        raise ALGError(f"{model} is neither a model directory nor a Hugging Face model id") from None
    except LocalEntryNotFoundError:
        raise ALGError(_not_cached(model, offline)) from None
    except EntryNotFoundError:
        raise ALGError(
            f"model {model!r} on the Hugging Face Hub has no model_index.json: it is no diffusers pipeline"
        ) from None
    except RepositoryNotFoundError:
        raise ALGError(
            f"the Hugging Face Hub has no model {model!r} (or it is private or gated: log in with `hf auth login`)"
        ) from None


def takes_prompt(model_index: Mapping[str, Any]) -> bool:
    """Whether the pipeline of a `model_index.json` reads a text prompt: whether it has a text encoder.

    Examples:
        >>> takes_prompt({"text_encoder": ["transformers", "UMT5EncoderModel"], "transformer_2": [None, None]})
        True
        >>> takes_prompt({"image_encoder": ["transformers", "CLIPVisionModelWithProjection"]})
        False
    """
    return any(
        name.startswith("text_encoder") and isinstance(component, list) and component[0] is not None
        for name, component in model_index.items()
    )


def load_pipeline(
    model: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    offload: str = "none",
    offline: bool = False,
) -> Any:
    """A diffusers pipeline from a local directory (written by `save_pretrained`) or a Hugging Face model id.

    Args:
        model: A local model directory, or a model id such as `"Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"`.
        dtype: The dtype of the weights.
        device: Where to run.
        offload: `"none"` (everything on `device`), `"model"` (diffusers' `enable_model_cpu_offload`: one
            model on the accelerator at a time), `"sequential"` (`enable_sequential_cpu_offload`: layer by
            layer, least memory, slowest) or `"group"` (`enable_group_offload`, one transformer block at a time).
        offline: Use local files only, as `HF_HUB_OFFLINE=1` does.

    Raises:
        ALGError: The offload mode does not suit `device`; `model` cannot be found (see `read_model_index`), or
            its weights are not in the cache while the Hub is off or unreachable.
    """
    from diffusers import DiffusionPipeline
    from huggingface_hub.errors import LocalEntryNotFoundError

    device = torch.device(device)
    check_offload(offload, device)
    offline = offline or hub_offline()
    read_model_index(model, offline=offline)
    path = Path(model).expanduser()
    local = path.is_dir()
    try:
        pipeline = DiffusionPipeline.from_pretrained(
            str(path) if local else str(model), dtype=dtype, local_files_only=local or offline
        )
    except LocalEntryNotFoundError as error:
        raise ALGError(_not_cached(str(model), offline)) from error
    place_pipeline(pipeline, device, offload)
    return pipeline


def _not_cached(model: str, offline: bool) -> str:
    from huggingface_hub import constants

    why = (
        "the Hub is switched off (HF_HUB_OFFLINE=1 or --offline), so nothing is downloaded"
        if offline
        else "the Hugging Face Hub could not be reached"
    )
    return (
        f"model {model!r} is not a local directory and is not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
        f"{why}. Download it where the network is available (hf download {model}) or pass its local directory."
    )


def place_pipeline(pipeline: Any, device: torch.device, offload: str = "none") -> None:
    """Move `pipeline` to `device`, or set up CPU offloading onto it (see `load_pipeline`)."""
    check_offload(offload, device)
    if offload == "none":
        pipeline.to(device)
    elif offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=device)
    else:
        pipeline.enable_group_offload(onload_device=device, offload_type="block_level", num_blocks_per_group=1)


def pipeline_arguments(pipeline: Any, *, fps: float | None = None, **options: Any) -> dict[str, Any]:
    """The keyword arguments for `pipeline(...)` from the options given (those that are not `None`).

    Options use the pipelines' own names (`image`, `prompt`, `negative_prompt`, `height`, `width`,
    `num_frames`, `num_inference_steps`, `guidance_scale`, ...). `fps` is passed as `frame_rate` or `fps` to the
    pipelines that take one (LTX-Video, SVD) and dropped for the others. Frames come back as NumPy arrays.

    Raises:
        ALGError: An option the pipeline does not take, naming the ones it does.
    """
    accepted = inspect.signature(pipeline.__call__).parameters
    arguments = {name: value for name, value in options.items() if value is not None}
    refused = sorted(set(arguments) - set(accepted))
    if refused:
        raise ALGError(
            f"{type(pipeline).__name__} takes no {', '.join(refused)}; it takes: {', '.join(sorted(accepted))}"
        )
    if fps is not None:
        arguments.update({name: fps for name in FRAME_RATE_PARAMETERS if name in accepted})
    arguments["output_type"] = "np"
    _check_prompt_cleaning(pipeline, arguments)
    return arguments


def _check_prompt_cleaning(pipeline: Any, arguments: dict[str, Any]) -> None:
    """Wan-family pipelines clean prompt strings with ftfy, which they import only if installed."""
    module = sys.modules.get(type(pipeline).__module__)
    is_available = getattr(module, "is_ftfy_available", None)
    prompted = isinstance(arguments.get("prompt"), str) or isinstance(arguments.get("negative_prompt"), str)
    if prompted and is_available is not None and not is_available():
        raise ModuleNotFoundError(f"{type(pipeline).__name__} cleans prompts with ftfy, which is missing", name="ftfy")


def sample_video(pipeline: Any, arguments: dict[str, Any], *, seed: int, description: str = "sampling") -> np.ndarray:
    """Run `pipeline(**arguments)` with a CPU generator seeded with `seed`; the first video's `uint8` frames.

    The pipeline's own progress bar shows the steps, titled `description`. The same seed gives the same
    initial noise on every device, so a run with ALG and one without start from the same latents.
    """
    pipeline.set_progress_bar_config(desc=description)
    generator = torch.Generator("cpu").manual_seed(seed)
    frames = pipeline(**arguments, generator=generator).frames
    return to_uint8(np.asarray(frames[0]))
