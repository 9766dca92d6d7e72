"""`alg-guidance preview`: what a config does to the condition, and when, before any model runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..preview import check_latent_path, default_shift, load_image, load_latent, render_preview
from .options import ConfigOption, PresetOption, SetOption, chosen_config, image_file, output_folder, path_check


def preview(
    preset: PresetOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    image: Annotated[
        Path | None,
        typer.Option(
            help="The input image; the shipped sample by default.",
            exists=True,
            dir_okay=False,
            callback=path_check(image_file),
        ),
    ] = None,
    latent: Annotated[
        Path | None,
        typer.Option(
            help="A saved latent condition (.pt, .pth, .safetensors) instead of an image.",
            exists=True,
            dir_okay=False,
            callback=path_check(check_latent_path),
        ),
    ] = None,
    key: Annotated[str | None, typer.Option(help="The tensor to read from a latent file holding several.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Number of sampling steps.")] = 50,
    shift: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Flow-matching timestep shift of the noise-level axis [default: the preset's model's, else 1].",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Output folder (created; its parent must exist).", callback=path_check(output_folder))
    ] = Path("alg-preview"),
) -> None:
    """Draw what a config does: the filtered condition, and when.

    Writes filtered.png, the condition at the strengths the schedule visits (at most 8, sampled evenly when it
    visits more), and schedule.png, the strength against step and noise level.
    """
    if image and latent:
        raise typer.BadParameter("give --image or --latent, not both")
    chosen = chosen_config(preset, config, overrides)
    shift = default_shift(preset) if shift is None else shift
    condition = {"latent": load_latent(latent, key)} if latent else {"image": load_image(image)}
    grid, plot = render_preview(chosen, out, num_steps=steps, shift=shift, **condition)
    typer.echo(f"wrote {grid} and {plot}")
