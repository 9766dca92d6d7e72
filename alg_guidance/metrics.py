"""Motion and fidelity metrics for generated videos, computed without downloaded weights.

- **Dynamic degree** follows VBench: frames sampled at about 8 fps, optical flow between consecutive samples,
  each pair scored by the mean of its top 5% flow magnitudes, a pair counting as moving above
  `6 * min(H, W) / 256` pixels (scaled by `8 / fps` for videos under 8 fps), and a video dynamic when at
  least `round(4 * n / 16)` pairs move, `n` being the number of sampled frames. VBench uses RAFT; this module
  uses OpenCV's Farneback flow, so the rule is VBench's but the flow, and so borderline decisions, may differ.
- **Flow score**: the mean over sampled pairs of the top-5% flow magnitude (the continuous motion measure the
  ALG paper reports next to the dynamic degree).
- **First-frame fidelity**: PSNR and SSIM (Wang et al. 2004) of the first frame against the input image,
  resized to the frame size as diffusers' image processors do (Lanczos, no crop).
- **Smoothness**: VBench's temporal-flickering score `1 - mean |f[i+1] - f[i]| / 255` over all frames, and the
  motion jitter: the mean change of the flow field from one sampled pair to the next (0 for steady motion).

Frames are `uint8` RGB arrays shaped `[frames, height, width, 3]`. Needs OpenCV (the `cli` extra).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

SAMPLING_FPS = 8.0  # VBench samples frames at about this rate
TOP_FRACTION = 0.05  # the share of largest flow magnitudes that scores a pair
THRESHOLD_PER_256_PIXELS = 6.0  # a pair moves above this many pixels per 256 pixels of the shorter side
PAIRS_PER_16_FRAMES = 4  # a video is dynamic when this many pairs per 16 sampled frames move
SSIM_WINDOW = 11  # Wang et al.: an 11 x 11 Gaussian window of standard deviation 1.5
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def optical_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The dense optical flow from `first` to `second` (RGB frames), in pixels, shaped `[H, W, 2]`.

    OpenCV's Farneback method on the grey-level frames: a 3-level pyramid halving each level, 15-pixel
    averaging windows, 3 iterations, 5-pixel polynomial neighbourhoods of standard deviation 1.2.
    """
    import cv2

    grey = [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in (first, second)]
    return cv2.calcOpticalFlowFarneback(grey[0], grey[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)


def top_flow_magnitude(flow: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """The mean of the largest `fraction` of the flow's per-pixel magnitudes (at least one pixel).

    Examples:
        >>> flow = np.zeros((10, 10, 2)); flow[0, :5] = (3.0, 4.0)
        >>> top_flow_magnitude(flow)
        5.0
    """
    magnitude = np.hypot(flow[..., 0], flow[..., 1]).ravel()
    count = max(1, int(magnitude.size * fraction))
    return float(np.partition(magnitude, magnitude.size - count)[-count:].mean())


def sampling_interval(fps: float) -> int:
    """Every how many frames VBench samples one: `max(1, round(fps / 8))` (Python's round, half to even).

    Examples:
        >>> [sampling_interval(fps) for fps in (4, 8, 16, 24, 30)]
        [1, 1, 2, 3, 4]
    """
    return max(1, round(fps / SAMPLING_FPS))


def motion_flows(frames: np.ndarray, fps: float) -> list[np.ndarray]:
    """The flow between each pair of consecutive frames sampled at VBench's rate (see `sampling_interval`)."""
    sampled = frames[:: sampling_interval(fps)]
    return [optical_flow(first, second) for first, second in itertools.pairwise(sampled)]


@dataclass(frozen=True)
class DynamicDegree:
    """VBench's motion decision for one video.

    Args:
        pair_scores: The top-5% flow magnitude of each pair of consecutive sampled frames, in pixels.
        threshold: A pair moves when its score exceeds this.
        required_pairs: The video is dynamic when at least this many pairs move.
    """

    pair_scores: tuple[float, ...]
    threshold: float
    required_pairs: int

    @property
    def moving_pairs(self) -> int:
        """How many pairs score above the threshold."""
        return sum(score > self.threshold for score in self.pair_scores)

    @property
    def dynamic(self) -> bool:
        """Whether enough pairs move.

        As in VBench, a video with fewer than three sampled frames needs no moving pair (`round(4 * 2 / 16)`
        is 0) and is dynamic as soon as it has one pair, moving or not; a single frame is never dynamic.
        """
        return bool(self.pair_scores) and self.moving_pairs >= self.required_pairs

    @property
    def flow_score(self) -> float:
        """The mean pair score: how much the video moves, as a number rather than a decision."""
        return float(np.mean(self.pair_scores)) if self.pair_scores else 0.0


def motion_threshold(height: int, width: int, fps: float) -> float:
    """The score above which a pair of sampled frames moves: `max(1, 8 / fps) * 6 * min(H, W) / 256` pixels.

    The factor `max(1, 8 / fps)` (VBench's, for videos under 8 fps, whose frames lie further apart) is 1 otherwise.

    Examples:
        >>> motion_threshold(480, 832, 16)
        11.25
    """
    return max(1.0, SAMPLING_FPS / fps) * THRESHOLD_PER_256_PIXELS * min(height, width) / 256


def required_moving_pairs(sampled_frames: int) -> int:
    """How many pairs must move for a video of `sampled_frames` sampled frames to be dynamic: `round(4 * n / 16)`.

    Python's round (half to even), as VBench computes it.

    Examples:
        >>> [required_moving_pairs(n) for n in (2, 6, 10, 16, 41)]
        [0, 2, 2, 4, 10]
    """
    return round(PAIRS_PER_16_FRAMES * sampled_frames / 16)


def dynamic_degree(frames: np.ndarray, fps: float, flows: Sequence[np.ndarray] | None = None) -> DynamicDegree:
    """VBench's dynamic-degree decision for frames played at `fps` (see the module docstring).

    Args:
        frames: `uint8` RGB frames `[F, H, W, 3]`.
        fps: The rate the video plays at; it sets the frame sampling and, under 8 fps, the threshold.
        flows: The flows of `motion_flows(frames, fps)`, when already computed.
    """
    flows = motion_flows(frames, fps) if flows is None else flows
    return DynamicDegree(
        tuple(top_flow_magnitude(flow) for flow in flows),
        motion_threshold(frames.shape[1], frames.shape[2], fps),
        required_moving_pairs(len(flows) + 1),
    )


def motion_jitter(flows: Sequence[np.ndarray]) -> float | None:
    """The mean per-pixel length of the change of flow between consecutive sampled pairs, in pixels.

    0 for a still video or steady motion; large when motion reverses or shakes. `None` with fewer than two flows.
    """
    if len(flows) < 2:
        return None
    changes = [np.hypot(*np.moveaxis(after - before, -1, 0)).mean() for before, after in itertools.pairwise(flows)]
    return float(np.mean(changes))


def temporal_flickering(frames: np.ndarray) -> float:
    """VBench's temporal-flickering score: `1 - mean |f[i+1] - f[i]| / 255` over consecutive frames, in `[0, 1]`.

    1 for identical frames; it falls with flicker and with motion alike. A single frame scores 1.
    """
    if len(frames) < 2:
        return 1.0
    differences = np.abs(np.diff(frames.astype(np.int16), axis=0))
    return float(1 - differences.mean() / 255)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two `uint8` images, in dB: `10 log10(255^2 / MSE)`; infinite when equal.

    Examples:
        >>> psnr(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8))
        0.0
    """
    _check_pair(image, reference)
    error = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return math.inf if error == 0 else float(10 * np.log10(255.0**2 / error))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) of two `uint8` images, averaged over colour channels.

    Local means, variances and covariance are taken under an 11 x 11 Gaussian window (standard deviation
    1.5), with `C1 = (0.01 * 255)^2`, `C2 = (0.03 * 255)^2`; the SSIM map is averaged over the pixels whose
    window lies inside the image. Images must be at least 11 pixels on each side.

    Examples:
        >>> ssim(np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 100, np.uint8))
        1.0
    """
    import cv2

    _check_pair(image, reference)
    if min(image.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {image.shape[:2]}")
    x, y = image.astype(np.float64), reference.astype(np.float64)

    def local_mean(values: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(values, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mean_x, mean_y = local_mean(x), local_mean(y)
    variance_x = local_mean(x * x) - mean_x**2
    variance_y = local_mean(y * y) - mean_y**2
    covariance = local_mean(x * y) - mean_x * mean_y
    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (variance_x + variance_y + c2)
    )
    margin = SSIM_WINDOW // 2
    return float(index[margin:-margin, margin:-margin].mean())


def resized_like(image: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """`image` resized (Lanczos, aspect not kept) to the size of `frame`, as a diffusers pipeline resizes its input."""
    from PIL import Image

    height, width = frame.shape[:2]
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


@dataclass(frozen=True)
class VideoMetrics:
    """Every metric of one video.

    Attributes:
        name: What the video is called in tables (its file name).
        frames: The number of frames.
        fps: Frames per second.
        height: Frame height in pixels.
        width: Frame width in pixels.
        flow_score: The mean top-5% flow magnitude over sampled pairs, in pixels.
        moving_pairs: How many sampled pairs move (score above `threshold`).
        pairs: How many sampled pairs there are.
        required_pairs: How many must move for the video to be dynamic.
        threshold: The per-pair motion threshold, in pixels.
        dynamic: VBench's decision.
        psnr: First frame against the input image, in dB (`None` without an image).
        ssim: First frame against the input image (`None` without an image).
        temporal_flickering: `1 - mean |f[i+1] - f[i]| / 255`.
        motion_jitter: The mean change of flow between consecutive sampled pairs (`None` under two pairs).
        pair_scores: The top-5% flow magnitude of each sampled pair.
    """

    name: str
    frames: int
    fps: float
    height: int
    width: int
    flow_score: float
    moving_pairs: int
    pairs: int
    required_pairs: int
    threshold: float
    dynamic: bool
    psnr: float | None
    ssim: float | None
    temporal_flickering: float
    motion_jitter: float | None
    pair_scores: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        """The metrics as a plain dict (for JSON)."""
        return {**asdict(self), "pair_scores": list(self.pair_scores)}


def evaluate_frames(
    frames: np.ndarray, fps: float, *, image: np.ndarray | None = None, name: str = "video"
) -> VideoMetrics:
    """All metrics of one video.

    Args:
        frames: `uint8` RGB frames `[F, H, W, 3]`.
        fps: The rate the video plays at (it sets VBench's frame sampling).
        image: The input image (`uint8` RGB `[H, W, 3]`, any size) for first-frame fidelity.
        name: The video's name in tables.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(
            f"frames must be uint8 and shaped [frames, height, width, 3], got {frames.dtype} {frames.shape}"
        )
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    flows = motion_flows(frames, fps)
    motion = dynamic_degree(frames, fps, flows)
    reference = None if image is None else resized_like(image, frames[0])
    return VideoMetrics(
        name=name,
        frames=len(frames),
        fps=float(fps),
        height=frames.shape[1],
        width=frames.shape[2],
        flow_score=motion.flow_score,
        moving_pairs=motion.moving_pairs,
        pairs=len(motion.pair_scores),
        required_pairs=motion.required_pairs,
        threshold=motion.threshold,
        dynamic=motion.dynamic,
        psnr=None if reference is None else psnr(frames[0], reference),
        ssim=None if reference is None else ssim(frames[0], reference),
        temporal_flickering=temporal_flickering(frames),
        motion_jitter=motion_jitter(flows),
        pair_scores=motion.pair_scores,
    )


def _check_pair(image: np.ndarray, reference: np.ndarray) -> None:
    if image.shape != reference.shape:
        raise ValueError(f"images differ in shape: {image.shape} vs {reference.shape}")
