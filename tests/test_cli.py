from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

import alg_guidance as alg
from alg_guidance.cli.app import app
from alg_guidance.preview import LATENT_SCALE, latent_views
from tests.support.cli_output import words
from tests.support.filters import down_up

runner = CliRunner()


def test_preview_renders_the_filtered_condition_and_the_schedule(tmp_path):
    result = runner.invoke(app, ["preview", "--preset", "wan2.1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "schedule.png") as plot:
        assert plot.size == (900, 320)
    with Image.open(tmp_path / "filtered.png") as grid:
        # two 320-pixel panels (strength 1 for steps 0-9, the original for 10-49) of the 512 x 320 sample
        assert grid.size == (640, round(100 * (3.2 * 320 / 512 + 0.8)))


def test_preview_of_a_config_file_and_an_image(tmp_path):
    config = tmp_path / "linear.yaml"
    alg.ALGConfig(schedule={"kind": "linear", "end": 0.5}, space="pixel").save(config)
    image = tmp_path / "image.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image)
    result = runner.invoke(
        app, ["preview", "--config", str(config), "--image", str(image), "--steps", "5", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    # a linear ramp over 5 steps (progress 0, .25, .5, ...) visits strengths 1, 0.5 and 0: three panels
    with Image.open(tmp_path / "o" / "filtered.png") as grid:
        assert grid.size == (960, round(100 * (3.2 * 48 / 64 + 0.8)))


def test_preview_refuses_a_preset_and_a_config_together(tmp_path):
    config = tmp_path / "c.yaml"
    alg.ALGConfig().save(config)
    result = runner.invoke(app, ["preview", "--preset", "paper", "--config", str(config)])
    assert result.exit_code == 2
    assert "give --preset or --config, not both" in result.output


def test_preview_of_a_saved_video_latent(tmp_path):
    torch.save(torch.randn(1, 16, 3, 6, 10), tmp_path / "latent.pt")  # [B, C, F, H, W]: frame 0 is shown
    result = runner.invoke(
        app, ["preview", "--preset", "wan2.1", "--latent", str(tmp_path / "latent.pt"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "filtered.png") as grid:
        assert grid.size == (640, round(100 * (3.2 * 6 / 10 + 0.8)))  # two panels of the 6 x 10 latent grid


def test_preview_picks_a_named_tensor_from_a_safetensors_file(tmp_path):
    path = tmp_path / "latents.safetensors"
    save_file({"image_latents": torch.randn(16, 8, 8), "noise": torch.randn(16, 8, 8)}, path)
    arguments = ["preview", "--latent", str(path), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1
    assert "latents.safetensors holds the tensors image_latents, noise; name one with key" in words(result.output)
    assert runner.invoke(app, [*arguments, "--key", "image_latents"]).exit_code == 0
    result = runner.invoke(app, [*arguments, "--key", "latents"])
    assert "it has no 'latents'" in words(result.output)


def test_preview_takes_an_image_or_a_latent(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    result = runner.invoke(app, ["preview", "--latent", str(tmp_path / "list.pt"), "--out", str(tmp_path)])
    assert "list.pt holds a list, not a tensor or a mapping of tensors" in words(result.output)
    Image.new("RGB", (16, 16)).save(tmp_path / "image.png")
    both = ["--latent", str(tmp_path / "list.pt"), "--image", str(tmp_path / "image.png")]
    result = runner.invoke(app, ["preview", *both])
    assert result.exit_code == 2
    assert "give --image or --latent, not both" in words(result.output)


def test_a_latent_is_previewed_in_latent_space_only(tmp_path):
    torch.save(torch.randn(16, 8, 8), tmp_path / "latent.pt")
    arguments = ["preview", "--latent", str(tmp_path / "latent.pt"), "--set", "space=pixel", "--out", str(tmp_path)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1
    assert "a saved latent can be previewed with a latent-space config only" in words(result.output)


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
def test_latent_views_show_the_filtered_latent_on_its_first_principal_component(strength):
    # every channel a multiple of one plane: the first principal component is that plane (up to sign)
    plane = torch.randn(12, 20)
    weights = torch.linspace(-1, 2, 16)
    latent = weights[:, None, None] * plane
    config = alg.ALGConfig(filter={"kind": "downsample", "factor": 0.25})
    (view,) = latent_views(latent, config, [strength])
    assert view.shape == (3, 12 * LATENT_SCALE, 20 * LATENT_SCALE)

    def component(values):  # the projection on the unit direction of `weights`, centred on the unfiltered mean
        return (values - plane.mean()) * weights.norm()

    reference = component(plane)
    low, high = reference.quantile(0.01), reference.quantile(0.99)
    filtered = component(down_up(plane, 0.25, strength))
    expected = ((filtered - low) / (high - low)).clamp(0, 1)
    flipped = ((high - filtered) / (high - low)).clamp(0, 1)  # the component's other sign
    shown = view[0, ::LATENT_SCALE, ::LATENT_SCALE]
    assert torch.allclose(shown, expected, atol=1e-4) or torch.allclose(shown, flipped, atol=1e-4)


def test_plugins_lists_builtins_and_installed_plugins_with_their_distribution():
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    assert "alg_guidance.filters (alg-guidance " in result.output
    assert "  filters: downsample, gaussian, butterworth" in result.output
    assert "alg-guidance-example (alg-guidance-example 0.1.0)\n  filters: median" in result.output


def test_presets_lists_every_preset():
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0
    for preset in alg.list_presets():
        assert preset.name in result.output


def test_a_missing_extra_names_the_install_command():
    code = "import sys; sys.modules['typer'] = None\nfrom alg_guidance.cli import main\nmain()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert 'pip install "alg-guidance[cli]"' in result.stderr
