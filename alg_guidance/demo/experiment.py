"""The miniature experiment: does image-to-video move less than label-to-video, and does ALG give motion back?

    python -m alg_guidance.demo.experiment --run runs/plain --out runs/plain/experiment
    python -m alg_guidance.demo.experiment --run runs/controlled --variant controlled --out runs/controlled/experiment

On `--inputs` fixed procedural clips (seeds `INPUT_SEEDS + i`, none seen in training; the controlled variant's
clips for `--variant controlled`), at every guidance scale of `--cfg`, it samples the same noise as

- **data**: the input clips themselves (what the measures read on ground truth);
- **label-to-video**: the pretrained model (`<run>/l2v`), from the label alone;
- **image-to-video**: the fine-tuned model (`<run>/i2v`), first frame and label, plain CFG;
- **+ ALG**: the same with ALG (`--alg`, the demo's default: down-up 0.4 over the first 20 % of steps);
- **+ constant low-pass**: the same with the image condition low-passed at every step, in both branches;

and reports the mean and standard error over inputs of every measure of `alg_guidance.demo.measure`, with the
paired difference of object speed against plain image-to-video. Writes `results.json` (every clip's measures)
and `tables.md` (one table per scale), and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from .data import ClipSpec, make_clip
from .measure import measure_clip
from .sampling import CONSTANT_LOW_PASS, DEFAULT_ALG, load_model, sample, to_frames

INPUT_SEEDS = 10**9
"""The experiment's input clips are drawn from seeds `INPUT_SEEDS + i`."""

MEASURES = {  # measure -> (column title, format)
    "object_speed": ("object speed px/frame", "{:.3f}"),
    "speed_change": ("paired change vs I2V", "{:+.3f}"),
    "moving_objects": ("moving objects", "{:.3f}"),
    "fine_speed": ("fine-texture speed", "{:.3f}"),
    "coarse_speed": ("coarse-texture speed", "{:.3f}"),
    "dynamic": ("dynamic degree", "{:.3f}"),
    "flow_score": ("flow top-5% px", "{:.3f}"),
    "psnr": ("first-frame PSNR dB", "{:.2f}"),
    "label_agrees": ("label agreement", "{:.3f}"),
}

logger = logging.getLogger(__name__)


def mean_and_error(values: list[float]) -> tuple[float, float, int]:
    """The mean, its standard error and the count of the finite `values` (`nan`s, e.g. no fine object, skipped).

    Examples:
        >>> mean_and_error([1.0, 3.0, float("nan")])
        (2.0, 1.0, 2)
    """
    finite = np.array([value for value in values if math.isfinite(value)], dtype=np.float64)
    if not len(finite):
        return math.nan, math.nan, 0
    error = float(finite.std(ddof=1) / math.sqrt(len(finite))) if len(finite) > 1 else math.nan
    return float(finite.mean()), error, len(finite)


def format_table(rows: dict[str, dict[str, list[float]]]) -> str:
    """A Markdown table: one row per method, `mean ± standard error` per measure."""
    lines = ["| method | " + " | ".join(title for title, _ in MEASURES.values()) + " |"]
    lines.append("|---" * (len(MEASURES) + 1) + "|")
    for method, measures in rows.items():
        cells = []
        for name, (_, pattern) in MEASURES.items():
            mean, error, _ = mean_and_error(measures.get(name, []))
            cells.append(
                "-" if math.isnan(mean) else f"{pattern.format(mean)} ± {pattern.replace('+', '').format(error)}"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> dict:
    """Run the experiment from the command line (see the module docstring); returns what `results.json` holds."""
    parser = argparse.ArgumentParser(prog="python -m alg_guidance.demo.experiment", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="A training run folder (holding l2v/ and i2v/).")
    parser.add_argument("--out", type=Path, required=True, help="The output folder (created).")
    parser.add_argument("--variant", choices=["plain", "controlled"], default="plain", help="The input clips.")
    parser.add_argument("--inputs", type=int, default=128, help="Fixed input clips.")
    parser.add_argument("--cfg", type=float, nargs="+", default=[1.0, 2.5, 5.0], help="Guidance scales.")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--alg", default=DEFAULT_ALG, help="The ALG preset, config file or YAML text.")
    parser.add_argument("--seed", type=int, default=0, help="The seed of the initial noise.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    args.out.mkdir(parents=True, exist_ok=True)
    parent = load_model(args.run / "l2v", args.device)
    child = load_model(args.run / "i2v", args.device)
    spec = ClipSpec(frames=child.config.frames, size=child.config.size, controlled=args.variant == "controlled")
    clips = [make_clip(INPUT_SEEDS + index, spec) for index in range(args.inputs)]
    started = time.perf_counter()
    results: dict = {"arguments": {key: str(value) for key, value in vars(args).items()}, "scales": {}}
    tables = []
    for scale in args.cfg:
        methods = {
            "label-to-video": (parent, False, None),
            "image-to-video": (child, True, None),
            "+ ALG": (child, True, args.alg),
            "+ constant low-pass": (child, True, CONSTANT_LOW_PASS),
        }
        rows: dict[str, dict[str, list[float]]] = {"data": _measures([clip.uint8() for clip in clips], clips)}
        for method, (model, conditioned, config) in methods.items():
            videos = []
            for first in range(0, len(clips), args.batch):
                chunk = clips[first : first + args.batch]
                labels = torch.tensor([clip.label for clip in chunk])
                image = torch.from_numpy(np.stack([clip.frames[0] for clip in chunk])).permute(0, 3, 1, 2) * 2 - 1
                clip_seed = args.seed + first  # the same noise for every method
                output = sample(
                    model,
                    labels,
                    image=image if conditioned else None,
                    config=config,
                    cfg_scale=scale,
                    steps=args.steps,
                    seed=clip_seed,
                )
                videos.extend(to_frames(output))
            rows[method] = _measures(videos, clips)
            logger.info("cfg %g, %s: done (%.0f s)", scale, method, time.perf_counter() - started)
        baseline = rows["image-to-video"]["object_speed"]
        for measures in rows.values():
            measures["speed_change"] = [a - b for a, b in zip(measures["object_speed"], baseline, strict=True)]
        results["scales"][str(scale)] = rows
        tables.append(
            f"### {args.variant} variant, CFG {scale:g}, {args.inputs} inputs, {args.steps} steps\n\n"
            + format_table(rows)
        )
    results["seconds"] = time.perf_counter() - started
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = "\n\n".join(tables) + "\n"
    (args.out / "tables.md").write_text(text)
    logger.info("%s\nwrote %s and %s", text, args.out / "results.json", args.out / "tables.md")
    return results


def _measures(videos: list[np.ndarray], clips: list) -> dict[str, list[float]]:
    """Every measure of every video, as one list per measure."""
    measured = [measure_clip(video, clip).as_dict() for video, clip in zip(videos, clips, strict=True)]
    return {name: [item[name] for item in measured] for name in measured[0]}


if __name__ == "__main__":
    run()
