"""`alg-guidance eval`: motion and fidelity metrics of videos, as a table, JSON, CSV and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..video import VIDEO_SUFFIXES, check_output_file, check_video_source, read_video
from .options import image_file, path_check

_output_file = path_check(check_output_file)  # the callback of the options that name a file to write


def evaluate(
    videos: Annotated[
        list[Path],
        typer.Argument(
            help=f"Video files ({', '.join(VIDEO_SUFFIXES)}), or folders of frames.",
            exists=True,
            callback=path_check(check_video_source),
        ),
    ],
    image: Annotated[
        list[Path] | None,
        typer.Option(
            help="The input image, for first-frame PSNR and SSIM: once for every video, or once per video in order.",
            exists=True,
            dir_okay=False,
            callback=path_check(image_file),
        ),
    ] = None,
    fps: Annotated[
        float | None, typer.Option(min=0.1, help="Frame rate: needed for frame folders, overrides a file's.")
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the metrics as JSON here.", callback=_output_file),
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write the metrics as CSV here.", callback=_output_file)
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG chart of the metrics here.", callback=_output_file)
    ] = None,
) -> None:
    """Measure the motion, fidelity and smoothness of videos.

    Motion as VBench's dynamic degree and the top-5% optical flow, fidelity as the first frame's PSNR and SSIM
    against the input image, smoothness as temporal flickering and motion jitter.
    """
    images = list(image or [])
    if len(images) not in (0, 1, len(videos)):
        raise typer.BadParameter(
            f"give one --image for all videos or one per video ({len(videos)}), got {len(images)}", param_hint="--image"
        )

    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from ..metrics import evaluate_frames
    from ..reports import format_table, plot_metrics, write_csv, write_json

    if len(images) == 1:
        images *= len(videos)
    names = [path.name for path in videos]
    if len(set(names)) < len(names):
        names = [str(path) for path in videos]
    results = []
    for index, path in enumerate(tqdm(videos, desc="measuring", unit="video")):
        video = read_video(path, fps)
        reference = None
        if images:
            with Image.open(images[index]) as picture:
                reference = np.asarray(picture.convert("RGB"))
        results.append(evaluate_frames(video.frames, video.fps, image=reference, name=names[index]))
    typer.echo(format_table(results))
    written = [
        writer(results, path)
        for writer, path in ((write_json, json_path), (write_csv, csv_path), (plot_metrics, plot))
        if path is not None
    ]
    if written:
        typer.echo("wrote " + ", ".join(str(path) for path in written))
