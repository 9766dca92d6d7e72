"""Render the pictures of docs/cli.md by running each command: `python docs/images/render_cli_images.py`.

Nothing is downloaded: `generate` runs the test suite's tiny random-weight Wan 2.1 model, and `eval` measures
videos made by panning over the shipped sample image. Run from the repository root with the `test` extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alg_guidance.preview import load_image
from alg_guidance.video import read_video, write_video
from tests.support import tiny_model_dir

IMAGES = Path(__file__).resolve().parent


def run(*arguments: str) -> str:
    """Run `alg-guidance` with `arguments` and return what it printed on stdout."""
    command = [sys.executable, "-m", "alg_guidance.cli", *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def sample_pixels() -> np.ndarray:
    """The shipped sample image as `uint8` `[H, W, 3]`."""
    return (load_image().permute(1, 2, 0) * 255).round().byte().numpy()


def preview(work: Path) -> None:
    """The preview of the wan2.1 preset on the sample image, and on a latent of it."""
    run("preview", "--preset", "wan2.1", "--out", str(work / "preview"))
    shutil.copy(work / "preview" / "filtered.png", IMAGES / "preview-filtered.png")
    shutil.copy(work / "preview" / "schedule.png", IMAGES / "preview-schedule.png")
    # a latent: the sample image through the tiny random Wan VAE, as [B, C, F, H, W]
    vae = tiny_model_dir.wan21_with_text_encoder().vae
    pixels = load_image()[None, :, None] * 2 - 1
    with torch.no_grad():
        latent = vae.encode(pixels).latent_dist.mode()
    torch.save(latent, work / "latent.pt")
    run("preview", "--preset", "wan2.1", "--latent", str(work / "latent.pt"), "--out", str(work / "latent"))
    shutil.copy(work / "latent" / "filtered.png", IMAGES / "preview-latent.png")


def generate(work: Path) -> None:
    """Three frames of `generate --compare` on the tiny model."""
    model = tiny_model_dir.save_wan21(work / "model")
    Image.fromarray(sample_pixels()).save(work / "sample.png")
    size = ["--height", "96", "--width", "160", "--frames", "17", "--steps", "8", "--fps", "8", "--device", "cpu"]
    out = work / "generate" / "boat.mp4"
    out.parent.mkdir()
    printed = run("generate", str(model), str(work / "sample.png"), "--prompt", "a boat sails", *size,
                  "--compare", "--out", str(out))  # fmt: skip
    # frames 0, 8 and 16 of the side-by-side video, one above the other
    frames = read_video(out.with_name("boat-compare.mp4")).frames
    gap = np.zeros((4, *frames.shape[2:]), np.uint8)
    sheet = np.concatenate([frames[0], gap, frames[8], gap, frames[16]])
    Image.fromarray(sheet).save(IMAGES / "generate-compare.png", optimize=True)
    print(printed)


def evaluate(work: Path) -> None:
    """The `eval --plot` chart of a panning and a still video."""
    sample = sample_pixels()
    # a 256 x 384 window panning 4 pixels a frame across the 320 x 512 sample, and the same window still
    panning = np.stack([sample[32:288, 4 * i : 4 * i + 384] for i in range(33)])
    write_video(work / "panning.mp4", panning, fps=16, progress=False)
    write_video(work / "still.mp4", np.repeat(panning[:1], 33, axis=0), fps=16, progress=False)
    Image.fromarray(panning[0]).save(work / "first.png")
    videos = [str(work / "panning.mp4"), str(work / "still.mp4")]
    printed = run("eval", *videos, "--image", str(work / "first.png"), "--plot", str(work / "eval.png"))
    shutil.copy(work / "eval.png", IMAGES / "eval-plot.png")
    print(printed)


def main() -> None:
    """Render every picture, printing what the commands printed."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        preview(work)
        generate(work)
        evaluate(work)
        print(run("plugins"))


if __name__ == "__main__":
    main()
