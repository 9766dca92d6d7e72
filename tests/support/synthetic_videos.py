"""Videos with known motion: a window sliding over a texture moves the content by exactly the window's step."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def texture(height: int = 256, width: int = 320, seed: int = 0) -> np.ndarray:
    """A random RGB texture, smoothed over about 2 pixels so that optical flow can follow it."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def sliding(source: np.ndarray, steps: Sequence[tuple[int, int]], size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Frames cut from `source` by a `size` window that starts at (16, 16) and moves by `steps[i]` = (dy, dx)
    pixels before frame `i + 1`: the content of frame `i + 1` is that of frame `i` shifted by (-dy, -dx)."""
    height, width = size
    y, x = 16, 16
    frames = [source[y : y + height, x : x + width]]
    for dy, dx in steps:
        y, x = y + dy, x + dx
        if not (0 <= y <= source.shape[0] - height and 0 <= x <= source.shape[1] - width):
            raise ValueError("the window leaves the texture; use a larger texture or smaller steps")
        frames.append(source[y : y + height, x : x + width])
    return np.stack(frames)


def translated(count: int, step: tuple[int, int], size: tuple[int, int] = (96, 128), seed: int = 0) -> np.ndarray:
    """`count` frames of a texture moving steadily by `step` = (dy, dx) pixels per frame."""
    return sliding(texture(seed=seed), [step] * (count - 1), size)


def static(count: int, size: tuple[int, int] = (96, 128), seed: int = 0) -> np.ndarray:
    """`count` identical frames."""
    return translated(count, (0, 0), size, seed)
