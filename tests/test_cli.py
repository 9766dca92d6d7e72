from __future__ import annotations

import subprocess
import sys

from PIL import Image
from typer.testing import CliRunner

import alg_guidance as alg
from alg_guidance.cli.app import app

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
