"""`alg-guidance eval` end to end on MP4s and frame folders with known motion."""

from __future__ import annotations

import csv
import json
import math
import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

from alg_guidance.cli import main
from alg_guidance.cli.app import app
from alg_guidance.video import write_frames, write_video
from tests.support import synthetic_videos
from tests.support.cli_output import usage_error, words

runner = CliRunner()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A texture moving 2 pixels right and 1 down per frame, the same texture still, and the first frame."""
    folder = tmp_path_factory.mktemp("videos")
    moving = synthetic_videos.translated(17, step=(1, 2))
    write_video(folder / "moving.mp4", moving, fps=16, progress=False)
    write_video(folder / "still.mp4", synthetic_videos.static(17), fps=16, progress=False)
    Image.fromarray(moving[0]).save(folder / "input.png")
    return folder


def test_eval_writes_a_table_json_csv_and_a_chart(videos, tmp_path):
    result = runner.invoke(
        app,
        [
            "eval",
            str(videos / "moving.mp4"),
            str(videos / "still.mp4"),
            "--image",
            str(videos / "input.png"),
            "--json",
            str(tmp_path / "m.json"),
            "--csv",
            str(tmp_path / "m.csv"),
            "--plot",
            str(tmp_path / "m.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "measuring" in result.output  # the progress bar
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.startswith(("moving", "still"))}
    assert "8/8 (need 2)  True" in rows["moving.mp4"]
    assert "0/8 (need 2)  False" in rows["still.mp4"]

    moving, still = json.loads((tmp_path / "m.json").read_text())["videos"]
    # 16 fps: every 2nd frame is sampled, so each pair is shifted by 2 * (1, 2) pixels
    assert moving["flow_score"] == pytest.approx(2 * math.hypot(1, 2), rel=0.10)
    assert (moving["frames"], moving["fps"], moving["pairs"], moving["dynamic"]) == (17, 16.0, 8, True)
    assert len(moving["pair_scores"]) == 8
    assert moving["psnr"] > 35 and moving["ssim"] > 0.9  # the first frame is the image, through H.264
    assert still["flow_score"] < 0.05 and still["dynamic"] is False
    assert still["temporal_flickering"] > 0.99 > moving["temporal_flickering"]

    with (tmp_path / "m.csv").open() as stream:
        table = list(csv.DictReader(stream))
    assert [row["name"] for row in table] == ["moving.mp4", "still.mp4"]
    assert [row["dynamic"] for row in table] == ["True", "False"]
    assert float(table[0]["flow_score"]) == pytest.approx(moving["flow_score"])
    with Image.open(tmp_path / "m.png") as chart:
        assert chart.size == (1200, 360)


def test_eval_reads_a_folder_of_frames_at_the_rate_given(tmp_path):
    write_frames(tmp_path / "frames", synthetic_videos.translated(9, step=(0, 3)))
    result = runner.invoke(app, ["eval", str(tmp_path / "frames"), "--fps", "8", "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    (video,) = json.loads((tmp_path / "m.json").read_text())["videos"]
    assert video["psnr"] is None  # no image given
    assert (video["pairs"], video["flow_score"]) == (8, pytest.approx(3, rel=0.10))


def test_eval_says_what_is_wrong(videos, tmp_path):
    (tmp_path / "frames").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "frames" / "0.png")
    result = runner.invoke(app, ["eval", str(tmp_path / "frames")])
    assert "is a folder of frames; give its frame rate" in usage_error(result)

    image = str(videos / "input.png")
    result = runner.invoke(app, ["eval", str(videos / "moving.mp4"), "--image", image, "--image", image])
    assert "give one --image for all videos or one per video (1), got 2" in usage_error(result)


def test_eval_refuses_what_is_not_a_video(videos, tmp_path):
    result = runner.invoke(app, ["eval", str(videos / "input.png")])
    assert "input.png is not a video: give a video file (.mp4, .m4v, .mov, .mkv, .webm, .avi, .gif) or a folder" in (
        usage_error(result)
    )
    (tmp_path / "junk.mp4").write_text("not a video")
    result = runner.invoke(app, ["eval", str(tmp_path / "junk.mp4")])
    assert "ffmpeg cannot decode" in usage_error(result) and "junk.mp4 as a video" in words(result.output)
    (tmp_path / "notes.png").write_text("not an image")
    result = runner.invoke(app, ["eval", str(videos / "still.mp4"), "--image", str(tmp_path / "notes.png")])
    assert "notes.png is not an image" in usage_error(result)


@pytest.mark.parametrize("option", ["--json", "--csv", "--plot"])
def test_eval_writes_only_into_existing_folders(videos, tmp_path, option):
    result = runner.invoke(app, ["eval", str(videos / "still.mp4"), option, str(tmp_path / "missing" / "m.out")])
    assert "to write m.out into; create it first" in usage_error(result)
    assert "measuring" not in result.output  # refused before any video is read
    assert not (tmp_path / "missing").exists()


def test_a_missing_opencv_names_the_extra_to_install(videos, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.setattr(sys, "argv", ["alg-guidance", "eval", str(videos / "still.mp4")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 'alg-guidance: this needs cv2; install it with: pip install "alg-guidance[cli]"'
