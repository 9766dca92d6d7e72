"""Video metrics as a text table, JSON, CSV and a PNG chart; the files go into existing folders.

Takes the [`VideoMetrics`][alg_guidance.metrics.VideoMetrics] that
[`evaluate_frames`][alg_guidance.metrics.evaluate_frames] returns. The chart needs matplotlib (the `cli` extra).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from .metrics import VideoMetrics

COLUMNS = {  # column -> (title, format)
    "name": ("video", "{}"),
    "frames": ("frames", "{}"),
    "fps": ("fps", "{:g}"),
    "flow_score": ("flow top-5%", "{:.2f}"),
    "moving_pairs": ("moving pairs", "{}"),
    "dynamic": ("dynamic", "{}"),
    "psnr": ("PSNR dB", "{:.2f}"),
    "ssim": ("SSIM", "{:.4f}"),
    "temporal_flickering": ("flickering", "{:.4f}"),
    "motion_jitter": ("jitter", "{:.3f}"),
}
CSV_FIELDS = [
    "name",
    "frames",
    "fps",
    "height",
    "width",
    "flow_score",
    "moving_pairs",
    "pairs",
    "required_pairs",
    "threshold",
    "dynamic",
    "psnr",
    "ssim",
    "temporal_flickering",
    "motion_jitter",
]


def format_table(results: Sequence[VideoMetrics]) -> str:
    """A fixed-width text table, one row per video; `-` where a metric is undefined.

    The moving-pairs column reads `moving/pairs (need required)`.
    """
    rows = [[title for title, _ in COLUMNS.values()]]
    for result in results:
        row = []
        for column, (_, pattern) in COLUMNS.items():
            value = getattr(result, column)
            if column == "moving_pairs":
                row.append(f"{value}/{result.pairs} (need {result.required_pairs})")
            else:
                row.append("-" if value is None else pattern.format(value))
        rows.append(row)
    widths = [max(len(row[index]) for row in rows) for index in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(results: Sequence[VideoMetrics], path: str | Path) -> Path:
    """Write `{"videos": [...]}` with every metric of every video, the per-pair flow scores included.

    An infinite PSNR (a first frame equal to the image) is written as JSON's extension `Infinity`, which Python's
    `json` reads back.
    """
    path = Path(path)
    path.write_text(json.dumps({"videos": [result.as_dict() for result in results]}, indent=2) + "\n")
    return path


def write_csv(results: Sequence[VideoMetrics], path: str | Path) -> Path:
    """Write one row per video (every metric but the per-pair scores); undefined metrics are empty cells."""
    path = Path(path)
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for result in results:
            writer.writerow(result.as_dict())
    return path


def plot_metrics(results: Sequence[VideoMetrics], path: str | Path) -> Path:
    """Write a PNG chart of the metrics of one or more videos.

    Left, the flow score of every sampled pair against the motion threshold, one line per video; middle, each
    video's flow score, labelled dynamic or static; right, its first-frame SSIM and temporal-flickering score.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    path = Path(path)
    figure, (pairs, scores, similarity) = pyplot.subplots(
        1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [2, 1, 1.2]}
    )
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, result in enumerate(results):
        color = colors[index % len(colors)]
        pairs.plot(range(1, result.pairs + 1), result.pair_scores, marker=".", color=color, label=result.name)
        pairs.axhline(result.threshold, color=color, linestyle="--", linewidth=0.8)
    pairs.set(xlabel="sampled pair", ylabel="top-5% flow magnitude (px)", title="motion per pair (dashed: threshold)")
    pairs.legend(fontsize=8)

    names = [result.name for result in results]
    positions = range(len(results))
    bars = scores.bar(positions, [result.flow_score for result in results], color=colors[: len(results)])
    scores.bar_label(bars, labels=["dynamic" if result.dynamic else "static" for result in results], fontsize=8)
    scores.set(ylabel="flow score (px)", title="mean top-5% flow")
    scores.set_xticks(list(positions), names, rotation=20, ha="right", fontsize=8)
    scores.margins(y=0.15)

    width = 0.4
    ssim = [result.ssim or 0.0 for result in results]
    flickering = [result.temporal_flickering for result in results]
    similarity.bar([p - width / 2 for p in positions], ssim, width, label="first-frame SSIM")
    similarity.bar([p + width / 2 for p in positions], flickering, width, label="temporal flickering")
    similarity.set(ylim=(0, 1.05), title="fidelity and smoothness")
    similarity.set_xticks(list(positions), names, rotation=20, ha="right", fontsize=8)
    similarity.legend(fontsize=8, loc="lower right")
    for axis in (pairs, scores, similarity):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
