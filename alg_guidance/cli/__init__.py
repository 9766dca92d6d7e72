"""The `alg-guidance` command line; its commands need the `cli` extra."""

from __future__ import annotations

import sys

EXTRA_MODULES = {"typer", "click", "PIL", "matplotlib"}


def main() -> None:
    """Run the command line, or say which extra to install if its libraries are missing."""
    try:
        from .app import app
    except ModuleNotFoundError as error:
        if error.name not in EXTRA_MODULES:
            raise
        sys.exit(f'alg-guidance: the command line needs {error.name}; install it with: pip install "alg-guidance[cli]"')
    app()
