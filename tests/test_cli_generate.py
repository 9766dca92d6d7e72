"""`alg-guidance generate` end to end on a real model directory written by `save_pretrained`."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from typer.testing import CliRunner

import alg_guidance as alg
from alg_guidance import generation
from alg_guidance.cli import main
from alg_guidance.cli.app import app
from alg_guidance.errors import ALGError
from alg_guidance.video import read_video, to_uint8
from tests.support import tiny_ltx, tiny_model_dir, tiny_wan
from tests.support.cli_output import usage_error

runner = CliRunner()
SIZE = ["--steps", "4", "--height", "64", "--width", "64", "--frames", "9", "--device", "cpu"]
PROMPTS = {"prompt": "a boat sails out to sea", "negative_prompt": "still"}
# full strength at every step with a strong filter, so that ALG visibly changes the tiny model's frames
STRONG = ["--set", "filter.factor=0.1", "--set", "schedule.kind=constant", "--set", "schedule.value=1.0"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model_dir.save_wan21(tmp_path_factory.mktemp("tiny-wan2.1"))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "input.png"
    tiny_wan.image().save(path)
    return path


def reference_frames(model, image, config=None, seed=3):
    """The frames of a direct pipeline call, with ALG when given a config."""
    pipe = DiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    with Image.open(image) as picture:
        arguments = {"image": picture.convert("RGB"), "height": 64, "width": 64, "num_frames": 9, **PROMPTS}
    arguments.update(num_inference_steps=4, output_type="np", generator=torch.Generator().manual_seed(seed))
    if config is None:
        return to_uint8(pipe(**arguments).frames[0])
    with alg.enable(pipe, config):
        return to_uint8(pipe(**arguments).frames[0])


def png_frames(folder):
    paths = sorted(folder.glob("*.png"))
    return np.stack([np.asarray(Image.open(path)) for path in paths])


def test_compare_renders_the_same_seed_with_and_without_alg(model, image, tmp_path):
    out = tmp_path / "out" / "boat.mp4"
    out.parent.mkdir()
    prompts = ["--prompt", PROMPTS["prompt"], "--negative-prompt", PROMPTS["negative_prompt"]]
    arguments = [*SIZE, *prompts, *STRONG, "--fps", "8", "--seed", "3", "--compare", "--gif", "--save-frames"]
    result = runner.invoke(app, ["generate", str(model), str(image), *arguments, "--out", str(out)])
    assert result.exit_code == 0, result.output
    for progress in ("sampling without ALG", "sampling with ALG", "encoding boat.mp4", "encoding boat-compare.mp4"):
        assert f"{progress}: 100%" in result.output
    assert "ALG: adapter wan2.1, filter {'kind': 'downsample', 'factor': 0.1}, schedule {'kind': 'constant'" in (
        result.output
    )

    config = alg.resolve_config("wan2.1").merge({"filter.factor": 0.1, "schedule": {"kind": "constant", "value": 1}})
    guided, plain = reference_frames(model, image, config), reference_frames(model, image)
    assert not np.array_equal(guided, plain)
    assert np.array_equal(png_frames(out.parent / "boat-frames"), guided)
    assert np.array_equal(png_frames(out.parent / "boat-no-alg-frames"), plain)

    for name, size in (("boat", (64, 64)), ("boat-no-alg", (64, 64)), ("boat-compare", (80, 136))):
        video = read_video(out.parent / f"{name}.mp4")
        assert (len(video.frames), video.size, video.fps) == (9, size, 8.0)
        with Image.open(out.parent / f"{name}.gif") as gif:
            assert (gif.n_frames, gif.size) == (9, size[::-1])
    side_by_side = read_video(out.parent / "boat-compare.mp4").frames
    assert np.abs(side_by_side[:, 16:, :64].astype(int) - guided).mean() < 4  # ALG on the left, through H.264
    assert np.abs(side_by_side[:, 16:, 72:].astype(int) - plain).mean() < 4

    report = json.loads((out.parent / "boat-metrics.json").read_text())["videos"]
    assert [video["name"] for video in report] == ["ALG", "without ALG"]
    assert all(video["frames"] == 9 and video["fps"] == 8.0 and video["pairs"] == 8 for video in report)
    assert all(0 < video["psnr"] < 100 and -1 <= video["ssim"] <= 1 for video in report)
    assert "ALG          9" in result.output and "without ALG  9" in result.output  # the table


def test_generate_uses_the_adapters_preset_and_writes_only_the_video(model, image, tmp_path):
    out = tmp_path / "clip.mp4"
    result = runner.invoke(app, ["generate", str(model), str(image), *SIZE, "--prompt", "waves", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "filter {'kind': 'downsample', 'factor': 0.4}, schedule {'kind': 'step', 'start': 0.0, 'end': 0.2}" in (
        result.output
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]
    assert read_video(out).frames.shape == (9, 64, 64, 3)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--offline"], "model 'alg-guidance-tests/no-such-model' is not a local directory and is not in the Hugging"),
        (["--offline"], "the Hub is switched off (HF_HUB_OFFLINE=1 or --offline)"),
        (["--device", "gpu"], "unknown device 'gpu'; use auto, cpu, cuda, cuda:N, mps or xpu"),
        (["--device", "cpu", "--offload", "model"], "it needs an accelerator device (cuda, mps, xpu), got cpu"),
        (["--preset", "wan9"], "unknown preset 'wan9'"),
    ],
)
def test_bad_input_is_explained_before_any_model_loads(image, arguments, message):
    result = runner.invoke(app, ["generate", "alg-guidance-tests/no-such-model", str(image), *arguments])
    assert message in usage_error(result)


def test_the_offline_environment_variable_keeps_model_ids_in_the_cache(image, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["generate", "alg-guidance-tests/no-such-model", str(image)])
    assert "the Hub is switched off (HF_HUB_OFFLINE=1 or --offline), so nothing is downloaded" in usage_error(result)


@pytest.fixture
def no_diffusers(monkeypatch):
    """Make importing diffusers fail, as loading a model would: a check that passes ran before any model loaded."""
    monkeypatch.setitem(sys.modules, "diffusers", None)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["MODEL", "IMAGE"], "--prompt: MODEL (WanImageToVideoPipeline) has a text encoder and needs a prompt"),
        (["MODEL", "IMAGE", "--prompt", "waves", "--preset", "wan9"], "unknown preset 'wan9'"),
        (["MODEL", "IMAGE", "--prompt", "w", "--preset", "wan2.1", "--set", "filter.factor=x"], "filter.factor: Input"),
        (["MODEL", "NOTES", "--prompt", "waves"], "notes.png is not an image"),
        (["EMPTY", "IMAGE", "--prompt", "waves"], "is not a diffusers model directory: it has no model_index.json"),
        (["IMAGE", "IMAGE", "--prompt", "waves"], "input.png is a file; give a diffusers model directory"),
        (["MODEL", "IMAGE", "--prompt", "waves", "--out", "MISSING/clip.mp4"], "there is no folder"),
        (["IMAGE_ONLY", "IMAGE", "--prompt", "waves"], "(StableVideoDiffusionPipeline) has no text encoder"),
    ],
)
def test_the_input_is_checked_before_the_model_loads(model, image, tmp_path, no_diffusers, arguments, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "svd").mkdir()
    svd = {"_class_name": "StableVideoDiffusionPipeline", "image_encoder": ["transformers", "CLIPVisionModel"]}
    (tmp_path / "svd" / "model_index.json").write_text(json.dumps(svd))
    paths = {
        "MODEL": str(model),
        "IMAGE": str(image),
        "NOTES": str(tmp_path / "notes.png"),
        "EMPTY": str(tmp_path / "empty"),
        "IMAGE_ONLY": str(tmp_path / "svd"),
        "MISSING/clip.mp4": str(tmp_path / "missing" / "clip.mp4"),
    }
    result = runner.invoke(app, ["generate", *[paths.get(argument, argument) for argument in arguments], *SIZE])
    assert message.replace("MODEL", str(model)) in usage_error(result)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["./no/such/dir", "IMAGE"], "./no/such/dir is neither a model directory nor a Hugging Face model id"),
        (["MODEL", "IMAGE", "--dtype", "float64"], "'float64' is not one of 'auto', 'float32', 'bfloat16', 'float16'"),
        (["MODEL", "IMAGE", "--out", "clip.avi"], "the output must be an .mp4 file, got clip.avi"),
    ],
)
def test_paths_dtypes_and_outputs_are_checked(model, image, arguments, message):
    arguments = [{"MODEL": str(model), "IMAGE": str(image)}.get(argument, argument) for argument in arguments]
    result = runner.invoke(app, ["generate", *arguments, "--device", "cpu"])
    assert message in usage_error(result)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_named():
    with pytest.raises(ALGError, match="device 'cuda:1' is not available: this PyTorch build or machine has no cuda"):
        generation.resolve_device("cuda:1")


def test_dtypes_follow_the_device():
    assert generation.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert generation.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert generation.resolve_dtype("float16", torch.device("cpu")) == torch.float16


def test_pipeline_arguments_take_the_pipelines_own_names():
    wan = tiny_wan.wan21()
    arguments = generation.pipeline_arguments(wan, prompt="waves", num_frames=9, height=None, fps=16)
    assert arguments == {"prompt": "waves", "num_frames": 9, "output_type": "np"}  # Wan takes no frame rate
    assert generation.pipeline_arguments(tiny_ltx.ltx_i2v(), fps=24)["frame_rate"] == 24
    with pytest.raises(ALGError, match=r"WanImageToVideoPipeline takes no decode_chunk_size; it takes: .*image"):
        generation.pipeline_arguments(wan, decode_chunk_size=4)


def test_a_missing_prompt_cleaner_names_the_extra_to_install(model, image, monkeypatch):
    module = sys.modules[type(tiny_wan.wan21()).__module__]
    monkeypatch.setattr(module, "is_ftfy_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["alg-guidance", "generate", str(model), str(image), "--prompt", "waves"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 'alg-guidance: this needs ftfy; install it with: pip install "alg-guidance[diffusers]"'
