"""See a configuration before sampling with it: the strengths its schedule visits and the filtered condition.

The condition can be an image (shown as the model would see it after encoding) or a saved latent (a `.pt`,
`.pth` or `.safetensors` file, shown through its first three principal components). Needs the `cli` extra
(Pillow and matplotlib): `pip install "alg-guidance[cli]"`.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import ALGConfig
from .presets import get_preset
from .schedules import StepState

LATENT_SCALE = 8  # the spatial downsampling of the VAEs of Wan, CogVideoX, HunyuanVideo and SVD
LATENT_SUFFIXES = (".pt", ".pth", ".safetensors")
CONTRAST_PERCENTILES = (0.01, 0.99)  # the latent component range mapped to black and white
PANEL_INCHES = 3.2  # the longer side of one panel of the filter grid; 320 pixels at the 100 dpi it is saved with
TITLE_INCHES = 0.5  # the height of a panel's two-line title
SUPTITLE_INCHES = 0.3  # the height of the figure's title
GRID_COLUMNS = 4  # panels per row of the filter grid
MAX_PANELS = 8  # at most this many strengths are drawn (two rows); a smooth schedule visits one per step


@dataclass(frozen=True)
class ScheduleTrace:
    """The strength a config applies at every step of one run.

    Args:
        states: The step state of each step.
        strengths: The strength at each step.
    """

    states: tuple[StepState, ...]
    strengths: tuple[float, ...]

    def visited(self) -> dict[float, list[int]]:
        """Each distinct strength, strongest first, with the steps that use it."""
        steps: dict[float, list[int]] = {}
        for state, strength in zip(self.states, self.strengths, strict=True):
            steps.setdefault(strength, []).append(state.step)
        return dict(sorted(steps.items(), reverse=True))


def flow_matching_noise_level(step: int, num_steps: int, shift: float = 1.0) -> float:
    """The noise level `t` of a flow-matching sampler at `step`: `1 - step / num_steps`, then time-shifted.

    The shift maps `t` to `shift * t / (1 + (shift - 1) * t)`, as Wan, HunyuanVideo and LTX-Video schedulers do.
    """
    t = 1.0 - step / num_steps
    return shift * t / (1.0 + (shift - 1.0) * t)


def default_shift(preset: str | None) -> float:
    """The timestep shift of the model `preset` is for ([`Preset.shift`][alg_guidance.presets.Preset]); 1 for None.

    Examples:
        >>> default_shift("wan2.1"), default_shift("cogvideox"), default_shift(None)
        (3.0, 1.0, 1.0)
    """
    return get_preset(preset).shift if preset else 1.0


def trace_schedule(config: ALGConfig, num_steps: int = 50, shift: float = 1.0) -> ScheduleTrace:
    """The strengths `config` applies over `num_steps` flow-matching steps with timestep `shift`."""
    states = tuple(
        StepState.from_step(step, num_steps, flow_matching_noise_level(step, num_steps, shift))
        for step in range(num_steps)
    )
    return ScheduleTrace(states, tuple(config.schedule(state) for state in states))


def load_image(path: str | Path | None = None) -> torch.Tensor:
    """An RGB image as a `[3, H, W]` float tensor in `[0, 1]`; the shipped sample image when `path` is None."""
    from PIL import Image

    source = files("alg_guidance").joinpath("assets/sample.png") if path is None else Path(path)
    with source.open("rb") as stream, Image.open(stream) as image:
        pixels = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
        return pixels.view(image.height, image.width, 3).permute(2, 0, 1).float() / 255


def filtered_views(image: torch.Tensor, config: ALGConfig, strengths: list[float]) -> list[torch.Tensor]:
    """The image as the model would see it at each strength.

    In latent space the filter acts on a grid `LATENT_SCALE` times coarser than the image, so the image is
    first reduced to that grid (area averaging), filtered there, and shown enlarged. At strength 0 nothing is
    filtered and the latent stands for the image itself, which is shown at full resolution.
    """
    height, width = image.shape[-2:]
    views = []
    for strength in strengths:
        if config.space == "pixel" or strength == 0:
            view = config.filter(image, strength)
        else:
            coarse = F.interpolate(image[None], scale_factor=1 / LATENT_SCALE, mode="area")
            filtered = config.filter(coarse, strength)
            view = F.interpolate(filtered, size=(height, width), mode="nearest")[0]
        views.append(view.clamp(0, 1))
    return views


def check_latent_path(path: str | Path) -> None:
    """Refuse a file that cannot hold a saved latent: one not ending in `.pt`, `.pth` or `.safetensors`.

    Raises:
        ValueError: Another suffix.
    """
    if Path(path).suffix not in LATENT_SUFFIXES:
        raise ValueError(f"a saved latent must end in one of {', '.join(LATENT_SUFFIXES)}, got {Path(path).name}")


def load_latent(path: str | Path, key: str | None = None) -> torch.Tensor:
    """A latent saved with `torch.save` (`.pt`, `.pth`; loaded with `weights_only=True`) or safetensors.

    Args:
        path: The file.
        key: The tensor's name when the file holds several (a dict, or a safetensors file with more than one).

    Raises:
        ValueError: An unknown suffix; a file that is not a safetensors file or a `torch.save` file of tensors
            (Python objects other than tensors are refused, never unpickled); no tensor, several tensors and no
            `key`, or an unknown `key` (the message lists the tensors the file holds).
    """
    path = Path(path)
    check_latent_path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            content: object = load_file(path)
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path.name} is not a file of tensors saved with torch.save: it holds other Python objects, which are "
            "refused rather than unpickled (weights_only=True), or it is no torch.save file at all"
        ) from error
    except Exception as error:  # whatever torch or safetensors raise for a file they cannot parse
        kind = "a safetensors file" if path.suffix == ".safetensors" else "a file of tensors saved with torch.save"
        raise ValueError(f"{path.name} is not {kind} ({type(error).__name__}: {error})") from error
    if isinstance(content, torch.Tensor):
        return content.float()
    if not isinstance(content, Mapping):
        raise ValueError(f"{path.name} holds a {type(content).__name__}, not a tensor or a mapping of tensors")
    tensors = {name: value for name, value in content.items() if isinstance(value, torch.Tensor)}
    if key is None and len(tensors) == 1:
        return next(iter(tensors.values())).float()
    if key in tensors:
        return tensors[key].float()
    names = ", ".join(sorted(tensors)) or "(none)"
    asked = "name one with key" if key is None else f"it has no {key!r}"
    raise ValueError(f"{path.name} holds the tensors {names}; {asked}")


def latent_plane(latent: torch.Tensor) -> torch.Tensor:
    """The `[C, H, W]` plane to show of a latent shaped `[C, H, W]`, `[B, C, H, W]` or `[B, C, F, H, W]`.

    The first batch entry and, for video latents, the first frame (where image-to-video models put the image).
    """
    if latent.ndim == 3:
        return latent
    if latent.ndim == 4:
        return latent[0]
    if latent.ndim == 5:
        return latent[0, :, 0]
    raise ValueError(f"a latent must be shaped [C, H, W], [B, C, H, W] or [B, C, F, H, W], got {tuple(latent.shape)}")


def latent_views(latent: torch.Tensor, config: ALGConfig, strengths: list[float]) -> list[torch.Tensor]:
    """The latent filtered at each strength, as `[3, H, W]` images in `[0, 1]`, enlarged `LATENT_SCALE` times.

    Channels are projected onto the first three principal components of the unfiltered plane, and each
    component's 1st to 99th percentile there is stretched to `[0, 1]`, so every view shares one colour mapping.
    """
    if config.space != "latent":
        raise ValueError("a saved latent can be previewed with a latent-space config only (space: latent)")
    plane = latent_plane(latent).float()
    channels, height, width = plane.shape
    pixels = plane.reshape(channels, -1).T
    mean = pixels.mean(dim=0)
    basis = torch.linalg.svd(pixels - mean, full_matrices=False).Vh[:3].T
    basis = F.pad(basis, (0, 3 - basis.shape[1]))  # fewer than 3 channels: the missing components stay 0

    def project(values: torch.Tensor) -> torch.Tensor:
        return (values.reshape(channels, -1).T - mean) @ basis

    reference = project(plane)
    low = reference.quantile(CONTRAST_PERCENTILES[0], dim=0)
    high = reference.quantile(CONTRAST_PERCENTILES[1], dim=0)
    views = []
    for strength in strengths:
        components = (project(config.filter(plane[None], strength)[0]) - low) / (high - low).clamp_min(1e-6)
        image = components.clamp(0, 1).T.reshape(3, height, width)
        views.append(F.interpolate(image[None], scale_factor=LATENT_SCALE, mode="nearest")[0])
    return views


def shown_strengths(visited: Mapping[float, list[int]], limit: int = MAX_PANELS) -> list[float]:
    """The strengths the filter grid draws, strongest first: 0 (the unfiltered condition) and every visited one.

    Past `limit` strengths (a smooth schedule visits one per step), `limit` of them evenly spaced in that order,
    the strongest and 0 included.

    Examples:
        >>> shown_strengths({1.0: [0, 1], 0.5: [2]})
        [1.0, 0.5, 0.0]
        >>> shown_strengths({step / 10: [10 - step] for step in range(1, 11)}, limit=4)
        [1.0, 0.7, 0.3, 0.0]
    """
    strengths = sorted({0.0, *visited}, reverse=True)
    if len(strengths) <= limit:
        return strengths
    picks = sorted({round(index * (len(strengths) - 1) / (limit - 1)) for index in range(limit)})
    return [strengths[index] for index in picks]


def render_preview(
    config: ALGConfig,
    output_dir: str | Path,
    *,
    image: torch.Tensor | None = None,
    latent: torch.Tensor | None = None,
    num_steps: int = 50,
    shift: float = 1.0,
) -> tuple[Path, Path]:
    """Write `filtered.png` (the condition at each strength visited) and `schedule.png` (the strength plots).

    The filter grid has at most `GRID_COLUMNS` panels a row and `MAX_PANELS` in all (see `shown_strengths`).

    Args:
        config: The configuration to preview.
        output_dir: The folder to write the two PNG files into; created if missing, but its parent must exist.
        image: A `[3, H, W]` image in `[0, 1]`; the shipped sample image by default.
        latent: A latent condition to show instead of an image (see `latent_views`; latent space only).
        num_steps: The number of sampling steps.
        shift: The flow-matching timestep shift used to place steps on the noise-level axis.

    Returns:
        The paths of the filter grid and of the schedule plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    output_dir = Path(output_dir)
    if image is not None and latent is not None:
        raise ValueError("preview an image or a latent, not both")
    output_dir.mkdir(exist_ok=True)
    trace = trace_schedule(config, num_steps, shift)
    visited = trace.visited()
    strengths = shown_strengths(visited)
    if latent is None:
        views = filtered_views(load_image() if image is None else image, config, strengths)
        subject = f"{config.space} space"
    else:
        views = latent_views(latent, config, strengths)
        subject = "saved latent, first 3 principal components"
    distinct = len({0.0, *visited})
    if distinct > len(strengths):
        subject += f"; {len(strengths)} of {distinct} strengths"

    columns = min(len(views), GRID_COLUMNS)
    rows = math.ceil(len(views) / columns)
    aspect = views[0].shape[-2] / views[0].shape[-1]
    width, height = PANEL_INCHES * min(1.0, 1 / aspect), PANEL_INCHES * min(1.0, aspect)
    figure, axes = pyplot.subplots(
        rows, columns, figsize=(width * columns, rows * (height + TITLE_INCHES) + SUPTITLE_INCHES), squeeze=False
    )
    for axis in axes.flat:
        axis.axis("off")
    for axis, strength, view in zip(axes.flat, strengths, views, strict=False):
        axis.imshow(view.permute(1, 2, 0).numpy())
        steps = visited.get(strength, [])
        where = "original" if not steps else f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
        axis.set_title(f"strength {strength:.2f}\n{where}", fontsize=9)
    figure.suptitle(f"{config.filter.kind} filter, {subject}", fontsize=10)
    grid_path = output_dir / "filtered.png"
    figure.tight_layout()
    figure.savefig(grid_path, dpi=100)
    pyplot.close(figure)

    figure, (by_step, by_noise) = pyplot.subplots(1, 2, figsize=(9, 3.2))
    steps = [state.step for state in trace.states]
    noise_levels = [state.noise_level for state in trace.states]
    by_step.step(steps, trace.strengths, where="post")
    by_step.set(xlabel="step", ylabel="strength", title=f"{config.schedule.kind} schedule, {num_steps} steps")
    # step i holds its strength from its noise level down to the next step's, and the last one down to 0
    by_noise.step([*noise_levels, 0.0], [*trace.strengths, trace.strengths[-1]], where="post")
    by_noise.plot(noise_levels, trace.strengths, ".", color="C0")
    by_noise.set(xlabel=f"noise level (flow matching, shift {shift:g})", ylabel="strength", xlim=(1.02, -0.02))
    for axis in (by_step, by_noise):
        axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    plot_path = output_dir / "schedule.png"
    figure.savefig(plot_path, dpi=100)
    pyplot.close(figure)
    return grid_path, plot_path
