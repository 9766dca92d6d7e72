"""`alg-guidance presets`: the shipped settings."""

from __future__ import annotations

import typer

from ..presets import list_presets


def presets() -> None:
    """List the presets, tuned ones first."""
    for preset in list_presets():
        typer.echo(f"{preset.name:14} {'tuned' if preset.tuned else 'untuned':8} {preset.description}")
