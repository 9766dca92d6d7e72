"""The `alg-guidance` application: one module per command, wired here."""

from __future__ import annotations

import typer

from .evaluate import evaluate
from .generate import generate
from .plugins import plugins
from .presets import presets
from .preview import preview

app = typer.Typer(help="Adaptive Low-Pass Guidance for image-to-video diffusion.", no_args_is_help=True)
app.command()(plugins)
app.command()(presets)
app.command()(preview)
app.command()(generate)
app.command("eval")(evaluate)
