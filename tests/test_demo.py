"""The demo: procedural data, its measures, sampling through alg.k_diffusion.guide, training, experiment, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from alg_guidance.cli.app import app
from alg_guidance.demo import experiment, train
from alg_guidance.demo.data import ClipSpec, make_clip
from alg_guidance.demo.measure import hue_label, object_speeds
from alg_guidance.demo.model import DemoVideoTransformer
from alg_guidance.demo.sampling import CONSTANT_LOW_PASS, load_model, sample

runner = CliRunner()
TINY = ["--frames", "8", "--size", "16", "--width", "32", "--depth", "1", "--heads", "2", "--workers", "1"]


def test_a_clip_is_a_function_of_its_seed():
    first, again, other = make_clip(3), make_clip(3), make_clip(4)
    assert np.array_equal(first.frames, again.frames) and np.array_equal(first.masks, again.masks)
    assert not np.array_equal(first.frames, other.frames)
    assert first.frames.shape == (16, 32, 32, 3) and first.frames.dtype == np.float32
    assert first.frames.min() >= 0 and first.frames.max() <= 1
    assert first.masks.shape == (len(first.objects), 16, 32, 32) and 1 <= len(first.objects) <= 3
    assert make_clip(0, ClipSpec(frames=5, size=24)).frames.shape == (5, 24, 24, 3)


@pytest.mark.parametrize("seed", range(12))
def test_masks_and_centres_move_by_the_stated_velocity(seed):
    clip = make_clip(seed, ClipSpec(camera_probability=0.5))
    for index, truth in enumerate(clip.objects):
        centroids = np.array([np.argwhere(mask).mean(axis=0) + 0.5 for mask in clip.masks[index]])
        assert np.allclose(np.diff(truth.centres, axis=0), truth.velocity)
        assert np.allclose(centroids, truth.centres, atol=0.5)  # pixel-grid masks of the analytic shapes
        assert (truth.speed > 0) == (truth.moving or clip.camera[-1].any())


def test_the_controlled_variant_makes_fine_texture_predict_stillness():
    def moving_rate(spec: ClipSpec, fine: bool) -> float:
        flags = [item.moving for seed in range(300) for item in make_clip(seed, spec).objects if item.fine == fine]
        return float(np.mean(flags))

    controlled, plain = ClipSpec(controlled=True), ClipSpec()
    assert moving_rate(controlled, fine=True) < 0.25 < 0.65 < moving_rate(controlled, fine=False)
    assert abs(moving_rate(plain, fine=True) - moving_rate(plain, fine=False)) < 0.15


def test_the_measures_read_the_ground_truth():
    errors, labels = [], []
    for seed in range(40):
        clip = make_clip(seed)
        errors.extend(object_speeds(clip.uint8(), clip) - [item.speed for item in clip.objects])
        labels.append(hue_label(clip.uint8()) == clip.label)
        still = np.repeat(clip.uint8()[:1], 16, axis=0)
        assert not object_speeds(still, clip).any()
    assert np.median(np.abs(errors)) < 0.1 and all(labels)


def _random_model() -> DemoVideoTransformer:
    torch.manual_seed(0)
    model = DemoVideoTransformer(frames=4, size=16, width=32, depth=1, heads=2)
    for parameter in model.parameters():  # the zero-initialised layers too, so that the image condition acts
        torch.nn.init.normal_(parameter, std=0.2)
    return model.eval()


def test_sampling_with_alg_changes_the_video_and_a_zero_schedule_is_plain_cfg():
    model, labels, image = _random_model(), torch.tensor([1, 2]), torch.rand(2, 3, 16, 16) * 2 - 1
    arguments = {"image": image, "cfg_scale": 2.5, "steps": 4, "seed": 1}
    plain = sample(model, labels, **arguments)
    assert plain.shape == (2, 3, 4, 16, 16)
    zero = sample(model, labels, config={"schedule": {"kind": "constant", "value": 0.0}}, **arguments)
    torch.testing.assert_close(zero, plain)
    for config in ("wan2.1", CONSTANT_LOW_PASS):
        assert (sample(model, labels, config=config, **arguments) - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="label-to-video"):
        sample(model, labels, config="wan2.1")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    steps = ["--pretrain-steps", "2", "--finetune-steps", "2", "--batch", "4", "--clips", "8", "--warmup", "1"]
    record = train.main(["--out", str(folder), *steps, *TINY])
    return folder, record


def test_training_writes_both_models_that_load_through_safetensors(tiny_run):
    folder, record = tiny_run
    assert [step for step, _ in record["stages"]["i2v"]["losses"]] == [2]
    for stage in ("l2v", "i2v"):
        assert (folder / stage / "diffusion_pytorch_model.safetensors").is_file()
        model = load_model(folder / stage)
        assert model.config.size == 16 and next(model.parameters()).dtype == torch.float32
    assert json.loads((folder / "train.json").read_text())["parameters"] == record["parameters"]


def test_the_experiment_writes_its_tables(tiny_run, tmp_path):
    folder, _ = tiny_run
    arguments = ["--inputs", "3", "--cfg", "2.5", "--steps", "2", "--batch", "2", "--variant", "controlled"]
    results = experiment.run(["--run", str(folder), "--out", str(tmp_path), *arguments])
    rows = results["scales"]["2.5"]
    assert list(rows) == ["data", "label-to-video", "image-to-video", "+ ALG", "+ constant low-pass"]
    assert all(len(values) == 3 for values in rows["+ ALG"].values())
    table = (tmp_path / "tables.md").read_text()
    assert "| + ALG |" in table and "±" in table and (tmp_path / "results.json").is_file()


def test_demo_without_weights_says_how_to_train_them(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "no trained demo weights are shipped yet" in result.output and "alg_guidance.demo.train" in result.output


def test_demo_samples_a_trained_checkpoint_with_and_without_alg(tiny_run, tmp_path):
    folder, _ = tiny_run
    out = tmp_path / "o"
    result = runner.invoke(app, ["demo", "--weights", str(folder), "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("demo.gif", "demo.mp4", "demo.png", "metrics.json"):
        assert (out / name).stat().st_size > 0
    assert "ALG  " in result.output and "without ALG" in result.output and "tracked object speed" in result.output
    assert "not Wan" in result.output
    names = [video["name"] for video in json.loads((out / "metrics.json").read_text())["videos"]]
    assert names == ["ALG", "without ALG"]


def test_demo_refuses_a_folder_without_a_model(tmp_path):
    result = runner.invoke(app, ["demo", "--weights", str(tmp_path)])
    assert result.exit_code == 2 and "holds no demo model" in result.output
