"""Video files in and out: MP4 through imageio-ffmpeg, GIF and PNG frames through Pillow, side-by-side layouts.

Frames are `uint8` RGB arrays shaped `[frames, height, width, 3]`. Needs the `cli` extra
(`pip install "alg-guidance[cli]"`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
LABEL_COLOR = (255, 255, 255)
LABEL_MARGIN = 2  # pixels kept clear on either side of a label
BACKGROUND = 0


@dataclass(frozen=True)
class Video:
    """Decoded frames and the rate they play at.

    Args:
        frames: `uint8` RGB frames shaped `[frames, height, width, 3]`.
        fps: Frames per second.
    """

    frames: np.ndarray
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        """`(height, width)` of a frame."""
        return self.frames.shape[1], self.frames.shape[2]


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames as `uint8`: floats are read as `[0, 1]` (what diffusers returns with `output_type="np"`), rounded.

    Examples:
        >>> to_uint8(np.array([0.0, 0.5, 1.2])).tolist()
        [0, 128, 255]
    """
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return np.clip(np.rint(frames.astype(np.float64) * 255), 0, 255).astype(np.uint8)


def check_video_source(path: str | Path) -> None:
    """Refuse a file that is not a video by its suffix (see `VIDEO_SUFFIXES`); folders (of frames) pass.

    A still image is refused rather than read as a one-frame video.

    Raises:
        ValueError: Another suffix; the message lists the accepted ones.
    """
    path = Path(path)
    if not path.is_dir() and path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(
            f"{path} is not a video: give a video file ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames"
        )


def read_video(path: str | Path, fps: float | None = None) -> Video:
    """Decode a video file (MP4, MOV, MKV, WebM, AVI or GIF, through ffmpeg) or a folder of image frames.

    Args:
        path: A video file, or a folder whose image files (PNG, JPEG, BMP, WebP) are the frames in name order.
        fps: The frame rate; required for a folder, and overrides the rate stored in a file.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: Not a video (see `check_video_source`), a file ffmpeg cannot decode, a folder without frames or
            without `fps`, or a file with no frames or no known rate.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no video at {path}")
    if path.is_dir():
        return _read_frame_folder(path, fps)
    check_video_source(path)
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    except OSError as error:  # imageio-ffmpeg's report carries ffmpeg's whole log; its last line says why
        reason = str(error).strip().splitlines()[-1]
        raise ValueError(f"ffmpeg cannot decode {path} as a video ({reason})") from None
    width, height = meta["size"]
    frames = [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]
    if not frames:
        raise ValueError(f"{path} holds no frames")
    rate = fps or meta["fps"]
    if not rate:
        raise ValueError(f"{path} does not say its frame rate; give it explicitly")
    return Video(np.stack(frames), float(rate))


def _read_frame_folder(folder: Path, fps: float | None) -> Video:
    from PIL import Image

    files = sorted(file for file in folder.iterdir() if file.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no frames ({', '.join(IMAGE_SUFFIXES)} files)")
    if fps is None:
        raise ValueError(f"{folder} is a folder of frames; give its frame rate")
    frames = []
    for file in files:
        with Image.open(file) as image:
            frames.append(np.asarray(image.convert("RGB")))
    if len({frame.shape for frame in frames}) > 1:
        raise ValueError(f"the frames in {folder} differ in size")
    return Video(np.stack(frames), float(fps))


def check_output_file(path: str | Path) -> None:
    """Refuse to write a file where no folder holds it, or where a folder is: no folder is created unasked.

    Raises:
        FileNotFoundError: The folder of `path` does not exist.
        IsADirectoryError: `path` is a folder.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"there is no folder {path.parent} to write {path.name} into; create it first")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name")


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 17, progress: bool = True) -> Path:
    """Encode frames as an H.264 MP4 (yuv420p, playable everywhere), with a progress bar.

    Args:
        path: The file to write, in an existing folder.
        frames: `[frames, height, width, 3]` frames, `uint8` or floats in `[0, 1]`; height and width must be even.
        fps: Frames per second.
        crf: x264's constant rate factor: 0 is lossless, 17 looks lossless, 23 is x264's default.
        progress: Show a progress bar on stderr.

    Returns:
        `path`.

    Raises:
        ValueError: The frames are not `[F, H, W, 3]`, or H or W is odd (yuv420p halves the colour planes).
        OSError: The folder of `path` does not exist, or `path` is a folder (see `check_output_file`).
    """
    import imageio_ffmpeg
    from tqdm import tqdm

    frames = _checked(frames)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 in yuv420p needs an even height and width, got {height} x {width}")
    path = Path(path)
    check_output_file(path)  # ffmpeg would fail with its whole log
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=float(fps),
        codec="libx264",
        quality=None,
        macro_block_size=1,
        output_params=["-crf", str(crf)],
    )
    writer.send(None)  # start ffmpeg
    try:
        for frame in tqdm(frames, desc=f"encoding {path.name}", unit="frame", disable=not progress):
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    return path


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write frames as a looping GIF (256 colours per frame) into an existing folder."""
    from PIL import Image

    frames = _checked(frames)
    path = Path(path)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def write_frames(directory: str | Path, frames: np.ndarray) -> list[Path]:
    """Write each frame as a PNG (`00000.png`, `00001.png`, ...) into `directory`; returns the paths.

    `directory` is created if missing; its parent must exist.
    """
    from PIL import Image

    frames = _checked(frames)
    directory = Path(directory)
    directory.mkdir(exist_ok=True)
    paths = []
    for index, frame in enumerate(frames):
        paths.append(directory / f"{index:05d}.png")
        Image.fromarray(frame).save(paths[-1])
    return paths


def side_by_side(videos: Sequence[np.ndarray], labels: Sequence[str], *, gap: int = 8) -> np.ndarray:
    """Videos next to each other, each under a label, separated by `gap` black columns.

    The videos must have the same frame count and height. The label strip is `max(16, height // 8)` pixels
    high, rounded up to even, so an even-sized input stays even. A label too long for its video's width is
    drawn smaller, so that it is never cut off.

    Examples:
        >>> side_by_side([np.zeros((3, 64, 64, 3), np.uint8)] * 2, ["ALG", "without ALG"]).shape
        (3, 80, 136, 3)
    """
    import cv2

    videos = [_checked(video) for video in videos]
    if len(labels) != len(videos):
        raise ValueError(f"{len(videos)} videos need {len(videos)} labels, got {len(labels)}")
    if len({video.shape[:2] for video in videos}) > 1:
        raise ValueError(f"side by side needs equal frame counts and heights, got {[v.shape[:3] for v in videos]}")
    count, height = videos[0].shape[:2]
    strip = max(16, height // 8)
    strip += strip % 2
    columns = []
    for index, (video, label) in enumerate(zip(videos, labels, strict=True)):
        if index:
            columns.append(np.full((count, height + strip, gap, 3), BACKGROUND, np.uint8))
        header = np.full((strip, video.shape[2], 3), BACKGROUND, np.uint8)
        (unit_width, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
        scale = min(strip / 40, (video.shape[2] - 2 * LABEL_MARGIN) / max(unit_width, 1))
        (text_width, text_height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        origin = (max(0, (video.shape[2] - text_width) // 2), (strip + text_height) // 2)
        cv2.putText(header, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, LABEL_COLOR, 1, cv2.LINE_AA)
        columns.append(np.concatenate([np.broadcast_to(header, (count, *header.shape)), video], axis=1))
    return np.concatenate(columns, axis=2)


def _checked(frames: np.ndarray) -> np.ndarray:
    frames = to_uint8(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(
            f"frames must be shaped [frames, height, width, 3] with at least one frame, got {frames.shape}"
        )
    return frames
