"""The `alg-guidance` application: one module per command, wired here."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from .demo import demo
from .evaluate import evaluate
from .generate import generate
from .options import CheckedCommand
from .plugins import plugins
from .presets import presets
from .preview import preview
from .sweep import sweep

# rich_markup_mode=None: click's plain help, which wraps long words at any width where rich's panels cut them short;
# a bug's traceback without every frame's local variables (input errors end as usage errors, see CheckedCommand)
app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_show_locals=False)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"alg-guidance {__version__}")
        raise typer.Exit()


@app.callback()
def alg_guidance(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """Adaptive Low-Pass Guidance for image-to-video diffusion."""


for command in (demo, plugins, presets, preview, generate, sweep):
    app.command(cls=CheckedCommand)(command)
app.command("eval", cls=CheckedCommand)(evaluate)
