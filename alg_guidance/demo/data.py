"""Procedural clips for the demo model: textured shapes moving at constant speed over a finely noisy background.

Every clip is a pure function of its seed and a [`ClipSpec`][alg_guidance.demo.data.ClipSpec]. A clip holds 1 to
3 striped or checkered squares and discs of one hue, which is the clip's label (`LABELS`), over a smooth,
desaturated background with fine per-pixel noise. Each object moves with probability `move_probability` in a
direction drawn uniformly at random, at constant speed; with probability `camera_probability` the camera pans at an
integer number of pixels per frame, moving the background and every object together. The first frame and the label
therefore do not determine the motion: copying the first frame is one of the videos the data allows.

The controlled variant (`ClipSpec(controlled=True)`) builds in the mechanism the ALG paper hypothesises: an object
with a fine texture (a 2-pixel period) moves with probability `fine_move_probability` (low), one with a coarse
texture with `move_probability`, so fine detail predicts stillness. It is a hypothesis made true by construction,
not a finding about real data.

The ground truth comes with the frames: each object's mask and centre in every frame (screen coordinates, the
camera included), its velocity, its texture, and the camera's path.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

LABELS = ("red", "yellow", "green", "blue")
"""The labels: the hue shared by a clip's objects."""

HUES = (0.0, 1 / 6, 1 / 3, 2 / 3)
"""The hue of each label, as fractions of the colour circle (HSV)."""

FINE_PERIOD = 2.0
"""The texture period (pixels) of a finely textured object: one-pixel stripes or checks."""

COARSE_PERIODS = (6.0, 8.0)
"""The range of texture periods (pixels) of a coarsely textured object."""


@dataclass(frozen=True)
class ClipSpec:
    """What a clip looks like and how it moves.

    Attributes:
        frames: Frames per clip.
        size: Height and width, in pixels.
        max_objects: At most this many objects (at least one).
        radius: The range of object radii (half the side of a square), in pixels.
        speed: The range of object speeds, in pixels per frame (before the clip is fitted into the frame).
        move_probability: The probability that an object moves (a coarsely textured one, in the controlled variant).
        camera_probability: The probability that the camera pans.
        camera_speed: The camera's speed along each axis: an integer number of pixels per frame, at most this.
        fine_probability: The probability that an object's texture is fine (a 2-pixel period).
        noise: The standard deviation of the background's fine per-pixel noise (on a `[0, 1]` scale).
        controlled: The controlled variant: finely textured objects move with `fine_move_probability`.
        fine_move_probability: The probability that a finely textured object moves, in the controlled variant.
    """

    frames: int = 16
    size: int = 32
    max_objects: int = 3
    radius: tuple[float, float] = (3.0, 6.0)
    speed: tuple[float, float] = (0.5, 1.25)
    move_probability: float = 0.8
    camera_probability: float = 0.3
    camera_speed: int = 1
    fine_probability: float = 0.5
    noise: float = 0.04
    controlled: bool = False
    fine_move_probability: float = 0.1

    def __post_init__(self) -> None:
        if self.frames < 2 or self.size < 16 or self.max_objects < 1:
            raise ValueError(f"a clip needs 2+ frames, 16+ pixels and 1+ objects, got {self}")
        for name in ("move_probability", "camera_probability", "fine_probability", "fine_move_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class ObjectTruth:
    """The ground truth of one object.

    Attributes:
        shape: `"square"` or `"disc"`.
        texture: `"stripes"` or `"checker"`.
        period: The texture period in pixels (`FINE_PERIOD` for a fine texture).
        radius: Half the side of a square, or a disc's radius, in pixels.
        moving: Whether the object moves in the world (it still moves on screen when the camera pans).
        velocity: The on-screen velocity `(dy, dx)`, in pixels per frame, the camera included.
        centres: The on-screen centre `(y, x)` in every frame, `[frames, 2]`.
    """

    shape: str
    texture: str
    period: float
    radius: float
    moving: bool
    velocity: tuple[float, float]
    centres: np.ndarray

    @property
    def fine(self) -> bool:
        """Whether the texture is fine."""
        return self.period == FINE_PERIOD

    @property
    def speed(self) -> float:
        """The on-screen speed, in pixels per frame."""
        return math.hypot(*self.velocity)


@dataclass(frozen=True)
class Clip:
    """One procedural clip and its ground truth.

    Attributes:
        frames: RGB frames in `[0, 1]`, `float32`, shaped `[frames, size, size, 3]`.
        masks: Each object's mask in every frame (unoccluded shape; later objects are drawn on top), `bool`,
            `[objects, frames, size, size]`.
        objects: The ground truth of each object, in drawing order.
        camera: The camera's offset `(y, x)` in every frame, in pixels, `[frames, 2]`.
        label: The label's index in `LABELS`.
        seed: The seed the clip was drawn from.
    """

    frames: np.ndarray
    masks: np.ndarray
    objects: tuple[ObjectTruth, ...]
    camera: np.ndarray
    label: int
    seed: int
    spec: ClipSpec = field(repr=False)

    @property
    def label_name(self) -> str:
        """The label as a word."""
        return LABELS[self.label]

    def uint8(self) -> np.ndarray:
        """The frames as `uint8` RGB, `[frames, size, size, 3]`."""
        return np.clip(np.rint(self.frames * 255), 0, 255).astype(np.uint8)


def _smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random field in `[-1, 1]` over `size x size` pixels: a few low-frequency cosines."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    total = np.zeros((size, size))
    for _ in range(4):
        fy, fx = rng.uniform(-1.5, 1.5, size=2)
        total += np.cos(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi))
    return total / 4


def _background(rng: np.random.Generator, spec: ClipSpec, margin: int) -> np.ndarray:
    """A desaturated canvas `margin` pixels larger than the frame on every side: smooth shading plus fine noise."""
    size = spec.size + 2 * margin
    base = rng.uniform(0.3, 0.6)
    tint = rng.uniform(-0.04, 0.04, size=3)
    shade = 0.12 * _smooth_field(rng, size)
    noise = rng.normal(0.0, spec.noise, size=(size, size, 1))
    canvas = base + tint + shade[..., None] + noise
    return np.clip(canvas, 0.0, 1.0)


def _texture(kind: str, period: float, angle: float, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """A two-tone pattern in `{0, 1}` over object coordinates `dy, dx`."""
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    stripes_u = np.floor(u * 2 / period) % 2
    if kind == "stripes":
        return stripes_u
    return (stripes_u + np.floor(v * 2 / period) % 2) % 2


def _fit_velocity(velocity: np.ndarray, span: float, steps: int) -> np.ndarray:
    """`velocity` scaled down, if needed, so that `steps` steps travel at most `span` pixels along each axis."""
    largest = np.abs(velocity).max() * steps
    return velocity if largest <= span or largest == 0 else velocity * (span / largest)


def make_clip(seed: int, spec: ClipSpec | None = None) -> Clip:
    """The clip of `seed` under `spec` (the default `ClipSpec()` if `None`).

    Examples:
        >>> clip = make_clip(0)
        >>> clip.frames.shape, clip.masks.shape[1:]
        ((16, 32, 32, 3), (16, 32, 32))
    """
    spec = spec or ClipSpec()
    rng = np.random.default_rng([seed, 9])  # the number: a stream apart from other seeded uses
    label = int(rng.integers(len(LABELS)))
    count = int(rng.integers(1, spec.max_objects + 1))
    steps = spec.frames - 1
    camera_velocity = np.zeros(2)
    if rng.random() < spec.camera_probability:
        while not camera_velocity.any():
            camera_velocity = rng.integers(-spec.camera_speed, spec.camera_speed + 1, size=2).astype(np.float64)
    margin = int(np.abs(camera_velocity).max() * steps)
    canvas = _background(rng, spec, margin)
    camera = np.arange(spec.frames)[:, None] * camera_velocity[None, :]  # the camera's offset in every frame

    ys, xs = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float64) + 0.5
    frames = np.empty((spec.frames, spec.size, spec.size, 3))
    for index in range(spec.frames):
        top, left = margin + int(camera[index, 0]), margin + int(camera[index, 1])
        frames[index] = canvas[top : top + spec.size, left : left + spec.size]

    objects, masks = [], []
    for _ in range(count):
        shape = "square" if rng.random() < 0.5 else "disc"
        texture = "stripes" if rng.random() < 0.5 else "checker"
        fine = rng.random() < spec.fine_probability
        period = FINE_PERIOD if fine else float(rng.uniform(*COARSE_PERIODS))
        angle = float(rng.choice([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4]))
        radius = float(rng.uniform(*spec.radius))
        probability = spec.fine_move_probability if spec.controlled and fine else spec.move_probability
        moving = bool(rng.random() < probability)
        direction = rng.uniform(0, 2 * math.pi)
        world = np.array([math.sin(direction), math.cos(direction)]) * rng.uniform(*spec.speed) * moving
        span = spec.size - 2 * radius
        velocity = _fit_velocity(world - camera_velocity, span, steps)  # on screen, kept inside the frame
        low = np.maximum(radius, radius - velocity * steps)
        high = np.minimum(spec.size - radius, spec.size - radius - velocity * steps)
        start = rng.uniform(low, np.maximum(low, high))
        centres = start[None, :] + np.arange(spec.frames)[:, None] * velocity[None, :]
        hue = HUES[label] + rng.uniform(-0.02, 0.02)
        light = np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.0)))
        dark = np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.8, 1.0), rng.uniform(0.4, 0.55)))
        object_masks = np.empty((spec.frames, spec.size, spec.size), dtype=bool)
        for index, (cy, cx) in enumerate(centres):
            dy, dx = ys - cy, xs - cx
            inside = np.maximum(np.abs(dy), np.abs(dx)) <= radius if shape == "square" else np.hypot(dy, dx) <= radius
            pattern = _texture(texture, period, angle, dy, dx)[..., None]
            colour = dark + (light - dark) * pattern
            frames[index] = np.where(inside[..., None], colour, frames[index])
            object_masks[index] = inside
        objects.append(ObjectTruth(shape, texture, period, radius, moving, tuple(map(float, velocity)), centres))
        masks.append(object_masks)
    return Clip(
        frames=frames.astype(np.float32),
        masks=np.stack(masks),
        objects=tuple(objects),
        camera=camera,
        label=label,
        seed=seed,
        spec=spec,
    )


def clip_batch(seeds: Sequence[int], spec: ClipSpec | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The clips of `seeds` as model inputs: videos in `[-1, 1]` shaped `[B, 3, F, H, W]`, and their labels `[B]`."""
    clips = [make_clip(seed, spec) for seed in seeds]
    videos = torch.from_numpy(np.stack([clip.frames for clip in clips])).permute(0, 4, 1, 2, 3)
    labels = torch.tensor([clip.label for clip in clips], dtype=torch.long)
    return videos * 2 - 1, labels
