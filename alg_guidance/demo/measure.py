"""What a sampled clip does, measured against the procedural input it was sampled from.

- **Object speed**: each object is tracked from its ground-truth mask in frame 0 (the image the model was given):
  the mask widened by `RING` pixels, as saturation and colour, is matched in every later frame against frame 0
  within `SEARCH` pixels of the previous position. The speed is the net displacement over the clip divided by the
  number of steps, in pixels per frame, on screen (a camera pan counts); an object moves above `MOVING_SPEED`.
  Background sharpness does not enter (whole-frame optical flow confounds motion with it).
- **Dynamic degree** and the top-5 % **flow score** of [`alg_guidance.metrics`][alg_guidance.metrics] (VBench's
  rule, Farneback flow).
- **First-frame fidelity**: PSNR of the clip's first frame against the input image.
- **Label agreement**: the hue of the clip's saturated pixels (the objects; the background is desaturated),
  classified as the nearest label hue, equals the label asked for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..metrics import dynamic_degree, psnr
from .data import HUES, Clip

SEARCH = 3
"""The largest shift (pixels, per axis) searched between consecutive frames."""

MOVING_SPEED = 0.25
"""An object moves when its tracked speed exceeds this many pixels per frame."""

RING = 2
"""Pixels of background around an object's mask that its template includes."""

COLOUR = 0.5
"""The weight of the RGB values against the saturation in the template match."""

SATURATED = 0.5
"""The HSV saturation (and value) above which a pixel counts as part of an object for the label's hue."""


def saturation(frames: np.ndarray) -> np.ndarray:
    """The HSV saturation of `uint8` RGB pixels, in `[0, 1]`, shaped like `frames` without its last axis."""
    values = frames.astype(np.float32)
    high, low = values.max(axis=-1), values.min(axis=-1)
    return np.where(high > 0, (high - low) / np.maximum(high, 1), 0.0)


def track_object(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The integer on-screen path `[frames, 2]` of the object whose frame-0 mask is `mask` (`[H, W]` bool).

    The objects are saturated and the background is not, so the object is tracked by its silhouette: the
    saturation of frame 0 in the mask's bounding box, widened by `RING` pixels, is matched in every later frame
    within `SEARCH` pixels of the previous position (outside the frame counts as unsaturated). Matching every frame
    against frame 0 keeps the error of the net displacement within a pixel, whatever the texture.

    Raises:
        ValueError: `mask` is empty.
    """
    if not mask.any():
        raise ValueError("the object's mask is empty")
    import cv2

    height, width = frames.shape[1:3]
    pad = height + width
    features = np.concatenate([saturation(frames)[..., None], frames.astype(np.float32) / 255 * COLOUR], axis=-1)
    features = np.pad(features, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((2 * RING + 1, 2 * RING + 1), np.uint8)).astype(bool)
    ring_ys, ring_xs = np.nonzero(ring)
    ring_ys, ring_xs = ring_ys + pad, ring_xs + pad
    template = features[0, ring_ys, ring_xs]
    position = np.zeros(2, dtype=int)
    path = [position.copy()]
    for following in features[1:]:
        best, best_cost = position, math.inf
        for dy in range(-SEARCH, SEARCH + 1):
            for dx in range(-SEARCH, SEARCH + 1):
                y, x = ring_ys + position[0] + dy, ring_xs + position[1] + dx
                cost = float(np.mean((following[y, x] - template) ** 2)) + 1e-6 * (dy * dy + dx * dx)  # ties: shorter
                if cost < best_cost:
                    best, best_cost = position + np.array([dy, dx]), cost
        position = best
        path.append(position.copy())
    return np.stack(path)


def object_speeds(frames: np.ndarray, clip: Clip) -> np.ndarray:
    """The tracked on-screen speed of each of `clip`'s objects in `frames`, in pixels per frame, `[objects]`."""
    steps = len(frames) - 1
    speeds = []
    for mask in clip.masks[:, 0]:
        path = track_object(frames, mask)
        speeds.append(float(np.hypot(*(path[-1] - path[0]))) / steps)
    return np.array(speeds)


def hue_label(frames: np.ndarray) -> int:
    """The label whose hue is nearest the circular mean hue of the saturated pixels of `frames`; -1 if none are.

    `frames` is `uint8` RGB, `[..., 3]`: one image or a clip.
    """
    import cv2

    pixels = np.ascontiguousarray(frames.reshape(-1, 1, 3))
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3).astype(np.float64) / 255
    chosen = (hsv[:, 1] > SATURATED) & (hsv[:, 2] > SATURATED * 0.6)
    if not chosen.any():
        return -1
    angles = 2 * np.pi * hsv[chosen, 0]
    mean = math.atan2(np.sin(angles).mean(), np.cos(angles).mean()) / (2 * np.pi) % 1.0
    distances = [min(abs(mean - hue), 1 - abs(mean - hue)) for hue in HUES]
    return int(np.argmin(distances))


@dataclass(frozen=True)
class ClipMeasures:
    """The measures of one sampled clip.

    Attributes:
        object_speed: The mean tracked speed of its objects, in pixels per frame.
        moving_objects: The fraction of its objects that move (speed above `MOVING_SPEED`).
        fine_speed: The mean tracked speed of its finely textured objects (`nan` if none).
        coarse_speed: The mean tracked speed of its coarsely textured objects (`nan` if none).
        dynamic: VBench's dynamic-degree decision (1.0 dynamic, 0.0 static).
        flow_score: The mean top-5 % optical-flow magnitude over sampled pairs, in pixels.
        psnr: First frame against the input image, in dB (capped at 100).
        label_agrees: 1.0 when the hue of the clip's objects is the label's.
    """

    object_speed: float
    moving_objects: float
    fine_speed: float
    coarse_speed: float
    dynamic: float
    flow_score: float
    psnr: float
    label_agrees: float

    def as_dict(self) -> dict[str, float]:
        """The measures as a plain dict."""
        return asdict(self)


def measure_clip(frames: np.ndarray, clip: Clip, label: int | None = None, fps: float = 8.0) -> ClipMeasures:
    """The measures of `frames` (`uint8` `[F, H, W, 3]`) sampled from `clip`'s first frame and `label`.

    Args:
        frames: The sampled clip.
        clip: The procedural input: its first frame, its objects' frame-0 masks and textures.
        label: The label asked for (`clip.label` if `None`).
        fps: The rate the clip plays at, for the dynamic degree (8: VBench samples every frame).
    """
    speeds = object_speeds(frames, clip)
    fine = np.array([item.fine for item in clip.objects])
    motion = dynamic_degree(frames, fps)
    return ClipMeasures(
        object_speed=float(speeds.mean()),
        moving_objects=float((speeds > MOVING_SPEED).mean()),
        fine_speed=float(speeds[fine].mean()) if fine.any() else math.nan,
        coarse_speed=float(speeds[~fine].mean()) if (~fine).any() else math.nan,
        dynamic=float(motion.dynamic),
        flow_score=motion.flow_score,
        psnr=min(100.0, psnr(frames[0], clip.uint8()[0])),
        label_agrees=float(hue_label(frames) == (clip.label if label is None else label)),
    )
