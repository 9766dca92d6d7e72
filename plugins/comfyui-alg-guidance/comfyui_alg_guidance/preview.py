"""A bar chart of ALG's strength per step, drawn with Pillow as a ComfyUI IMAGE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 640, 320, 40


def draw_strengths(strengths: Sequence[float], sigmas: Sequence[float], title: str = "") -> torch.Tensor:
    """One bar per step, as tall as its strength in [0, 1], labelled with the step's sigma at both ends.

    Returns:
        A ComfyUI IMAGE: `[1, H, W, 3]`, float32 in [0, 1].
    """
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    plot_width, plot_height = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    bottom = HEIGHT - MARGIN
    draw.line([(MARGIN, bottom), (WIDTH - MARGIN, bottom)], fill="black")
    draw.line([(MARGIN, MARGIN), (MARGIN, bottom)], fill="black")
    bar = plot_width / max(len(strengths), 1)
    for index, strength in enumerate(strengths):
        left = MARGIN + index * bar
        top = bottom - strength * plot_height
        if strength > 0:
            draw.rectangle([left + 1, top, left + max(bar - 1, 1), bottom - 1], fill=(214, 90, 49))
    draw.text((MARGIN, 8), title, fill="black")
    draw.text((4, MARGIN - 6), "1", fill="black")
    draw.text((4, bottom - 6), "0", fill="black")
    active = sum(strength > 0 for strength in strengths)
    if sigmas:
        caption = f"{len(strengths)} steps, {active} filtered; sigma {sigmas[0]:.3g} -> {sigmas[-1]:.3g}"
        draw.text((MARGIN, bottom + 10), caption, fill="black")
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).unsqueeze(0)
