"""The `alg-guidance` command line; its commands need the `cli` extra, and `generate` the `diffusers` extra too."""

from __future__ import annotations

import sys

# the extra that installs each third-party module the commands import
EXTRAS = {
    "typer": "cli",
    "click": "cli",
    "PIL": "cli",
    "matplotlib": "cli",
    "imageio": "cli",
    "imageio_ffmpeg": "cli",
    "cv2": "cli",
    "tqdm": "cli",
    "diffusers": "diffusers",
    "transformers": "diffusers",
    "accelerate": "diffusers",
    "huggingface_hub": "diffusers",
    "safetensors": "diffusers",
    "ftfy": "diffusers",
}


def main() -> None:
    """Run the command line, or say which extra to install when a library it needs is missing."""
    try:
        from .app import app

        app(prog_name="alg-guidance")
    except ModuleNotFoundError as error:
        extra = EXTRAS.get((error.name or "").partition(".")[0])
        if extra is None:
            raise
        sys.exit(f'alg-guidance: this needs {error.name}; install it with: pip install "alg-guidance[{extra}]"')
