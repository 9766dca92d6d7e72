"""Video files written and read back through imageio-ffmpeg and Pillow; the side-by-side layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from alg_guidance import video
from tests.support import synthetic_videos


def test_an_mp4_round_trip_keeps_frames_size_rate_and_content(tmp_path):
    frames = synthetic_videos.translated(12, step=(0, 2), size=(48, 64))
    path = video.write_video(tmp_path / "clip.mp4", frames, fps=12, progress=False)
    decoded = video.read_video(path)
    assert decoded.frames.shape == (12, 48, 64, 3)
    assert decoded.size == (48, 64)
    assert decoded.fps == 12
    # x264 at crf 17; yuv420p stores colour at half resolution, which costs most of the error on this texture
    assert np.abs(decoded.frames.astype(int) - frames).mean() < 3


def test_floats_in_zero_one_are_encoded_like_their_uint8_rounding(tmp_path):
    frames = np.random.default_rng(0).random((2, 16, 16, 3))
    assert np.array_equal(video.to_uint8(frames), np.rint(frames * 255).astype(np.uint8))
    video.write_frames(tmp_path, frames)
    with Image.open(tmp_path / "00001.png") as image:
        assert np.array_equal(np.asarray(image), video.to_uint8(frames[1]))


def test_a_gif_has_every_frame_at_the_rate_asked(tmp_path):
    frames = synthetic_videos.translated(5, step=(0, 1), size=(32, 40))
    path = video.write_gif(tmp_path / "clip.gif", frames, fps=10)
    with Image.open(path) as gif:
        assert (gif.n_frames, gif.size, gif.info["duration"], gif.info["loop"]) == (5, (40, 32), 100, 0)


def test_a_folder_of_frames_reads_in_name_order_and_needs_a_rate(tmp_path):
    frames = synthetic_videos.translated(3, step=(1, 1), size=(16, 24))
    paths = video.write_frames(tmp_path / "frames", frames)
    assert [path.name for path in paths] == ["00000.png", "00001.png", "00002.png"]
    decoded = video.read_video(tmp_path / "frames", fps=8)
    assert np.array_equal(decoded.frames, frames) and decoded.fps == 8
    with pytest.raises(ValueError, match="give its frame rate"):
        video.read_video(tmp_path / "frames")
    with pytest.raises(FileNotFoundError):
        video.read_video(tmp_path / "missing.mp4")


def test_files_are_written_into_existing_folders_only(tmp_path):
    frames = synthetic_videos.static(2, size=(16, 16))
    with pytest.raises(FileNotFoundError, match=r"there is no folder .*missing to write clip\.mp4 into"):
        video.write_video(tmp_path / "missing" / "clip.mp4", frames, fps=8, progress=False)
    with pytest.raises(FileNotFoundError):
        video.write_gif(tmp_path / "missing" / "clip.gif", frames, fps=8)
    with pytest.raises(FileNotFoundError):
        video.write_frames(tmp_path / "missing" / "frames", frames)
    assert not (tmp_path / "missing").exists()
    assert len(video.write_frames(tmp_path / "frames", frames)) == 2  # the named folder itself is created


def test_still_images_and_undecodable_files_are_not_videos(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "first.png")
    with pytest.raises(ValueError, match=r"first.png is not a video: give a video file \(.mp4, .m4v, .mov"):
        video.read_video(tmp_path / "first.png")
    (tmp_path / "junk.webm").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"ffmpeg cannot decode .*junk\.webm as a video"):
        video.read_video(tmp_path / "junk.webm")


def test_odd_sizes_and_wrong_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even height and width, got 15 x 16"):
        video.write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8), fps=8)
    with pytest.raises(ValueError, match=r"\[frames, height, width, 3\]"):
        video.write_gif(tmp_path / "grey.gif", np.zeros((2, 16, 16), np.uint8), fps=8)


def test_side_by_side_puts_each_video_under_its_label_with_a_gap():
    left = synthetic_videos.translated(3, step=(0, 1), size=(64, 48))
    right = synthetic_videos.static(3, size=(64, 48), seed=1)
    both = video.side_by_side([left, right], ["ALG", "without ALG"], gap=8)
    strip = 16  # max(16, 64 // 8)
    assert both.shape == (3, 64 + strip, 48 + 8 + 48, 3)
    assert np.array_equal(both[:, strip:, :48], left)
    assert not both[:, :, 48:56].any()
    assert np.array_equal(both[:, strip:, 56:], right)
    assert both[:, :strip, :48].any() and both[:, :strip, 56:].any()  # the labels are drawn
    with pytest.raises(ValueError, match="equal frame counts and heights"):
        video.side_by_side([left, right[:2]], ["a", "b"])


@pytest.mark.parametrize("width", [48, 64, 200])
def test_labels_are_drawn_whole_whatever_the_width(width):
    clip = np.zeros((1, 64, width, 3), np.uint8)
    header = video.side_by_side([clip, clip], ["ALG", "without ALG"], gap=8)[0, :16, width + 8 :]
    inked = np.flatnonzero(header.any(axis=(0, 2)))
    assert len(inked) and inked[0] > 0 and inked[-1] < width - 1  # clear of both edges: nothing cut off
