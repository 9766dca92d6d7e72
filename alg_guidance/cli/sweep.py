"""`alg-guidance sweep`: many (image, prompt, seed, config) jobs over the processes of a torchrun or accelerate launch.

Process `RANK` of `WORLD_SIZE` (set by `torchrun` and `accelerate launch`; 0 of 1 when run alone) takes the jobs
whose index `i` has `i % WORLD_SIZE == RANK`, on the accelerator `LOCAL_RANK`. Each job writes `<name>.mp4` and
then `<name>.json` (its job and metrics), each to a temporary file renamed into place: a job is done when its JSON
exists, so a killed sweep leaves no half-written output that looks done, and a new run skips the finished jobs.
At the end, after a barrier, rank 0 writes `summary.csv`, `summary.json` and `summary.png` (`--summarize` alone
writes them from the outputs there are).
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config_text import read_config_file
from ..errors import ConfigError
from .generate import DType, _load_rgb
from .options import describe, output_folder, path_check

SUMMARY = ("summary.csv", "summary.json", "summary.png")


class Job(BaseModel):
    """One video to sample: its image and prompt, its seed, and ALG's config (or none, for the baseline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=120)
    image: str
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int = 0
    preset: str | None = None
    config: dict[str, Any] | str | None = None
    alg: bool = True
    steps: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=16)
    width: int | None = Field(None, ge=16)
    frames: int | None = Field(None, ge=1)
    guidance_scale: float | None = None
    fps: float = Field(16.0, gt=0)

    @field_validator("config")
    @classmethod
    def _no_empty_config(cls, value: Any) -> Any:
        if value == {} or value == "":
            raise ValueError("give a config mapping or a config file path, or leave config out")
        return value


class JobsFile(BaseModel):
    """A jobs file: `defaults` for every job, then a `jobs` list and/or a `grid` of lists expanded into jobs."""

    model_config = ConfigDict(extra="forbid")

    defaults: dict[str, Any] = {}
    jobs: list[dict[str, Any]] = []
    grid: dict[str, list[Any]] = {}


def read_jobs(path: Path) -> list[Job]:
    """The jobs of a jobs file, each named, with its image path made absolute (relative to the file).

    Raises:
        ConfigError: The file cannot be read, a job does not validate, a job's image is missing, or two jobs
            share a name.
    """
    try:
        spec = JobsFile.model_validate(read_config_file(path))
        rows = [*spec.jobs, *_grid(spec.grid)]
        jobs = [Job.model_validate({**spec.defaults, **row}) for row in rows]
    except ValidationError as error:
        raise ConfigError(f"{path}: {describe(error)}") from None
    if not jobs:
        raise ConfigError(f"{path} has no jobs: give a `jobs` list or a `grid` of lists")
    named = []
    for index, job in enumerate(jobs):
        image = (path.parent / job.image).resolve()
        if not image.is_file():
            raise ConfigError(f"{path}: job {index} names image {job.image}, which is not a file")
        update = {"image": str(image), "name": job.name or f"job-{index:04d}"}
        if isinstance(job.config, str):
            update["config"] = str((path.parent / job.config).resolve())
        named.append(job.model_copy(update=update))
    names = [job.name for job in named]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{path}: job names must differ; repeated: {', '.join(duplicates)}")
    return named


def _grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if not grid:
        return []
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[key] for key in keys))]


def _rank() -> tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) from the launcher's environment; (0, 1, 0) without one."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (launchers set them)") from None
    if not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is outside WORLD_SIZE {world}")
    return rank, world, local


def _atomic(path: Path, write: Any) -> Path:
    """Write `path` through `write(temporary_path)`, then rename it into place."""
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    write(temporary)
    os.replace(temporary, path)
    return path


def sweep(
    model: Annotated[str, typer.Argument(help="A diffusers model directory (save_pretrained) or a Hub model id.")],
    jobs_file: Annotated[
        Path,
        typer.Argument(metavar="JOBS", help="A .yaml, .yml or .json jobs file.", exists=True, dir_okay=False),
    ],
    out: Annotated[
        Path, typer.Option(help="The folder for the videos, metrics and summary.", callback=path_check(output_folder))
    ] = Path("sweep"),
    dtype: Annotated[DType, typer.Option(help="Weight dtype.")] = DType.auto,
    device: Annotated[
        str, typer.Option(help="auto (the accelerator LOCAL_RANK, else the CPU), cpu, cuda, cuda:N, mps or xpu.")
    ] = "auto",
    offline: Annotated[bool, typer.Option(help="Use local files only, as HF_HUB_OFFLINE=1 does.")] = False,
    summarize: Annotated[
        bool, typer.Option(help="Only write the summary of the outputs in --out; sample nothing.")
    ] = False,
) -> None:
    """Sample the videos of a jobs file, resumably, on many GPUs.

    The jobs are spread over the processes of `torchrun` or `accelerate launch`. Finished jobs (their metrics
    JSON in --out) are skipped, so an interrupted sweep resumes where it stopped.
    """
    jobs = read_jobs(jobs_file)
    out.mkdir(exist_ok=True)
    if summarize:
        typer.echo("wrote " + ", ".join(str(path) for path in _summarize(jobs, out)))
        return
    rank, world, local = _rank()
    mine = [job for index, job in enumerate(jobs) if index % world == rank]
    todo = [job for job in mine if not (out / f"{job.name}.json").is_file()]
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=timedelta(days=7))  # only for the final barrier
    typer.echo(f"rank {rank}/{world}: {len(todo)} of {len(mine)} jobs to run", err=True)
    if todo:
        _run(model, todo, out, dtype, device, local, offline)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        typer.echo("wrote " + ", ".join(str(path) for path in _summarize(jobs, out)))


def _run(model: str, jobs: list[Job], out: Path, dtype: DType, device: str, local: int, offline: bool) -> None:
    import numpy as np
    import torch

    from ..adapters.lookup import find_adapter
    from ..config import resolve_config
    from ..generation import load_pipeline, pipeline_arguments, resolve_device, resolve_dtype, sample_video
    from ..integrations.diffusers import enable
    from ..metrics import evaluate_frames
    from ..video import write_video
    from .options import chosen_config

    if device == "auto" and torch.cuda.is_available():
        device = f"cuda:{local % torch.cuda.device_count()}"
    target = resolve_device(device)
    configs = {  # every config checked before the model loads; `None` for the adapter's preset
        job.name: resolve_config(job.config) if job.config else chosen_config(job.preset, None, default=None)
        for job in jobs
    }
    pipe = load_pipeline(model, dtype=resolve_dtype(dtype.value, target), device=target, offline=offline)
    preset = resolve_config(find_adapter(pipe).preset)
    for job in jobs:
        picture = _load_rgb(Path(job.image))
        arguments = pipeline_arguments(
            pipe,
            image=picture,
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            height=job.height,
            width=job.width,
            num_frames=job.frames,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance_scale,
            fps=job.fps,
        )
        config = None if not job.alg else configs[job.name] or preset
        if config is None:
            frames = sample_video(pipe, arguments, seed=job.seed, description=job.name)
        else:
            with enable(pipe, config):
                frames = sample_video(pipe, arguments, seed=job.seed, description=job.name)
        write = lambda path, frames=frames, fps=job.fps: write_video(path, frames, fps, progress=False)  # noqa: E731
        video = _atomic(out / f"{job.name}.mp4", write)
        metrics = evaluate_frames(frames, job.fps, image=np.asarray(picture), name=job.name)
        record = {
            "job": job.model_dump(),
            "config": None if config is None else config.model_dump(mode="json"),
            "video": video.name,
            "metrics": metrics.as_dict(),
        }
        _atomic(out / f"{job.name}.json", lambda path, record=record: path.write_text(json.dumps(record, indent=2)))


def _summarize(jobs: list[Job], out: Path) -> list[Path]:
    """Write the summary table (CSV, JSON) and chart of the finished jobs, in the jobs file's order."""
    from ..metrics import VideoMetrics
    from ..reports import plot_metrics, write_csv, write_json

    results = []
    for job in jobs:
        path = out / f"{job.name}.json"
        if path.is_file():
            metrics = json.loads(path.read_text())["metrics"]
            results.append(VideoMetrics(**{**metrics, "pair_scores": tuple(metrics["pair_scores"])}))
    missing = len(jobs) - len(results)
    if missing:
        typer.echo(f"{missing} of {len(jobs)} jobs have no output yet; the summary leaves them out", err=True)
    if not results:
        raise ConfigError(f"no job of the jobs file has an output in {out} yet; run the sweep first")
    writers = (write_csv, write_json, plot_metrics)
    return [
        _atomic(out / name, lambda path, writer=writer: writer(results, path))
        for name, writer in zip(SUMMARY, writers, strict=True)
    ]
