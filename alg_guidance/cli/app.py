"""The commands of `alg-guidance`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import ALGConfig, resolve_config
from ..presets import list_presets
from ..registry import list_plugins

app = typer.Typer(help="Adaptive Low-Pass Guidance for image-to-video diffusion.", no_args_is_help=True)

PresetOption = Annotated[str | None, typer.Option(help="A preset name (see `alg-guidance presets`).")]
ConfigOption = Annotated[Path | None, typer.Option(help="A .yaml, .yml or .json config file.", exists=True)]


def chosen_config(preset: str | None, config: Path | None) -> ALGConfig:
    """The config named by `--preset` or `--config` (the `paper` preset if neither)."""
    if preset and config:
        raise typer.BadParameter("give --preset or --config, not both")
    return resolve_config(config or preset or "paper")


@app.command()
def plugins() -> None:
    """List the registered filters, schedules and adapters with the plugin and distribution behind them."""
    for plugin in list_plugins():
        where = f"{plugin.distribution} {plugin.version}" if plugin.distribution else "added by hand"
        typer.echo(f"{plugin.name} ({where})")
        if plugin.error:
            typer.echo(f"  skipped: {plugin.error}")
        for kind in ("filters", "schedules", "adapters"):
            names = getattr(plugin, kind)
            if names:
                typer.echo(f"  {kind}: {', '.join(names)}")


@app.command()
def presets() -> None:
    """List the presets, tuned ones first."""
    for preset in list_presets():
        typer.echo(f"{preset.name:14} {'tuned' if preset.tuned else 'untuned':8} {preset.description}")


@app.command()
def preview(
    preset: PresetOption = None,
    config: ConfigOption = None,
    image: Annotated[Path | None, typer.Option(help="The input image; the shipped sample by default.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Number of sampling steps.")] = 50,
    shift: Annotated[float, typer.Option(min=0.01, help="Flow-matching timestep shift.")] = 1.0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("alg-preview"),
) -> None:
    """Render the filtered condition at each strength the schedule visits, and the schedule itself."""
    from ..preview import load_image, render_preview

    grid, plot = render_preview(
        chosen_config(preset, config), out, image=load_image(image), num_steps=steps, shift=shift
    )
    typer.echo(f"wrote {grid} and {plot}")
