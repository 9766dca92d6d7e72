"""`alg-guidance demo`: the demo model sampled with and without ALG, side by side, with the metrics of both."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..demo.data import LABELS
from .options import PresetOption, image_file, output_folder, path_check

SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "demo" / "weights"
"""Where the package's trained demo weights go (a `save_pretrained` folder); none are shipped yet."""

TRAIN_COMMAND = "python -m alg_guidance.demo.train --out runs/plain"
"""The GPU command that trains the demo model (see docs/demo.md)."""

INPUT_SEED = 7
"""The seed of the procedural clip whose first frame and label the demo samples from by default."""

SCALE = 4  # pixels per model pixel in the written videos and strip
FPS = 8.0

Label = Enum("Label", {name: name for name in LABELS}, type=str)  # the labels as a typer choice


def _weights_folder(path: Path) -> Path:
    """A `save_pretrained` folder: `path` itself, or the image-to-video model of a training run folder."""
    if (path / "i2v" / "config.json").is_file():
        return path / "i2v"
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} holds no demo model: give a training run folder or its i2v/ folder")
    return path


def demo(
    weights: Annotated[
        Path | None,
        typer.Option(help="A trained demo model: a training run folder or its i2v/ folder.", file_okay=False),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            help="The first frame (resized to the model's size); a procedural clip's by default.",
            exists=True,
            dir_okay=False,
            callback=path_check(image_file),
        ),
    ] = None,
    label: Annotated[Label | None, typer.Option(help="The label (the objects' colour) [default: the input's].")] = None,
    seed: Annotated[int, typer.Option(help="The seed of the initial noise.")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="Euler steps.")] = 30,
    guidance: Annotated[float, typer.Option(min=1.0, help="The classifier-free guidance scale.")] = 2.5,
    preset: PresetOption = None,
    out: Annotated[
        Path, typer.Option(help="Output folder (created; its parent must exist).", callback=path_check(output_folder))
    ] = Path("alg-demo"),
) -> None:
    """Sample the demo model with and without ALG, and compare the two.

    Writes demo.gif and demo.mp4 (side by side), demo.png (a strip of frames, ALG above) and metrics.json.
    """
    if weights is None:
        if not (SHIPPED_WEIGHTS / "config.json").is_file():
            typer.echo(
                "alg-guidance demo: no trained demo weights are shipped yet; train them on a GPU with "
                f"`{TRAIN_COMMAND}` and run `alg-guidance demo --weights runs/plain`",
                err=True,
            )
            raise typer.Exit(2)
        weights = SHIPPED_WEIGHTS
    folder = _weights_folder(weights)

    import numpy as np
    from PIL import Image

    from ..demo.data import ClipSpec, make_clip
    from ..demo.measure import hue_label, object_speeds
    from ..demo.sampling import DEFAULT_ALG, load_model, sample, to_frames, to_image
    from ..metrics import evaluate_frames
    from ..reports import format_table, write_json
    from ..video import side_by_side, write_gif, write_video

    model = load_model(folder)
    size = model.config.size
    clip = None
    if image is None:
        clip = make_clip(INPUT_SEED, ClipSpec(frames=model.config.frames, size=size))
        first = clip.uint8()[0]
    else:
        with Image.open(image) as picture:
            first = np.asarray(picture.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
    index = LABELS.index(label.value) if label is not None else clip.label if clip is not None else hue_label(first)
    index = max(index, 0)
    chosen = preset or DEFAULT_ALG
    videos = {}
    for name, config in (("ALG", chosen), ("without ALG", None)):
        typer.echo(f"sampling {name}", err=True)
        output = sample(
            model,
            [index],
            image=to_image(first),
            config=config,
            cfg_scale=guidance,
            steps=steps,
            seed=seed,
            progress=True,
        )
        videos[name] = to_frames(output)[0]
    out.mkdir(exist_ok=True)
    large = {name: video.repeat(SCALE, axis=1).repeat(SCALE, axis=2) for name, video in videos.items()}
    both = side_by_side(list(large.values()), list(large))
    written = [write_gif(out / "demo.gif", both, FPS), write_video(out / "demo.mp4", both, FPS, progress=False)]
    strip = np.concatenate([np.concatenate(list(video[::2]), axis=1) for video in large.values()], axis=0)
    Image.fromarray(strip).save(out / "demo.png")
    written.append(out / "demo.png")
    results = [evaluate_frames(video, FPS, image=first, name=name) for name, video in videos.items()]
    written.append(write_json(results, out / "metrics.json"))
    typer.echo(format_table(results))
    if clip is not None:
        for name, video in videos.items():
            speeds = object_speeds(video, clip)
            typer.echo(f"{name}: tracked object speed {speeds.mean():.2f} px/frame ({len(speeds)} objects)")
    typer.echo(
        f"model: {folder} - a {sum(p.numel() for p in model.parameters()):,}-parameter pixel-space "
        f"video transformer trained on procedural {size}x{size} clips of moving shapes, label {LABELS[index]!r}, "
        f"ALG {chosen}; a controlled miniature that shows what ALG changes in sampling, not Wan or any real model"
    )
    typer.echo("wrote " + ", ".join(str(path) for path in written))
