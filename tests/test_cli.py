from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

import alg_guidance as alg
from alg_guidance.cli import preview as preview_command
from alg_guidance.cli.app import app
from alg_guidance.preview import LATENT_SCALE, filtered_views, latent_views
from tests.support.cli_output import usage_error, words
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
    assert "latents.safetensors holds the tensors image_latents, noise; name one with key" in usage_error(
        runner.invoke(app, arguments)
    )
    assert runner.invoke(app, [*arguments, "--key", "image_latents"]).exit_code == 0
    result = runner.invoke(app, [*arguments, "--key", "latents"])
    assert "it has no 'latents'" in words(result.output)


def test_preview_takes_an_image_or_a_latent(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    result = runner.invoke(app, ["preview", "--latent", str(tmp_path / "list.pt"), "--out", str(tmp_path)])
    assert "list.pt holds a list, not a tensor or a mapping of tensors" in usage_error(result)
    Image.new("RGB", (16, 16)).save(tmp_path / "image.png")
    both = ["--latent", str(tmp_path / "list.pt"), "--image", str(tmp_path / "image.png")]
    result = runner.invoke(app, ["preview", *both])
    assert result.exit_code == 2
    assert "give --image or --latent, not both" in words(result.output)


def test_a_latent_is_previewed_in_latent_space_only(tmp_path):
    torch.save(torch.randn(16, 8, 8), tmp_path / "latent.pt")
    arguments = ["preview", "--latent", str(tmp_path / "latent.pt"), "--set", "space=pixel", "--out", str(tmp_path)]
    result = runner.invoke(app, arguments)
    assert "a saved latent can be previewed with a latent-space config only" in usage_error(result)


class Pickled:
    """Not a tensor: torch.load(weights_only=True) refuses to unpickle it."""


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("object.pt", lambda path: torch.save({"latent": Pickled()}, path), "object.pt is not a file of tensors saved"),
        ("junk.pt", lambda path: path.write_text("junk"), "junk.pt is not a file of tensors saved with torch.save"),
        ("junk.safetensors", lambda path: path.write_text("junk"), "junk.safetensors is not a safetensors file"),
        ("latent.npy", lambda path: path.write_text("junk"), "a saved latent must end in one of .pt, .pth"),
    ],
)
def test_a_latent_file_that_holds_no_tensors_is_a_usage_error(tmp_path, name, write, message):
    write(tmp_path / name)
    result = runner.invoke(app, ["preview", "--latent", str(tmp_path / name), "--out", str(tmp_path / "o")])
    assert message in usage_error(result)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("filter: {kind: downsample, factor: 0.4\nschedule: [", "bad.yaml"),  # malformed YAML
        ("filter: !!python/object/apply:os.system [echo hello]\n", "bad.yaml"),  # a Python tag
        ("filter: {kind: downsample, factor: 7}\n", "filter.factor"),  # valid YAML, invalid config
    ],
)
def test_a_bad_config_file_is_a_usage_error(tmp_path, content, message):
    (tmp_path / "bad.yaml").write_text(content)
    result = runner.invoke(app, ["preview", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o")])
    assert message in usage_error(result)


@pytest.mark.parametrize(
    ("override", "message"),
    [("filter.factor=[0.3", "--set"), ("filter.factor=high", "filter.factor"), ("factor", "--set expects KEY=VALUE")],
)
def test_a_bad_override_is_a_usage_error(tmp_path, override, message):
    result = runner.invoke(app, ["preview", "--set", override, "--out", str(tmp_path / "o")])
    assert message in usage_error(result)


def test_an_image_that_is_not_one_is_a_usage_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    result = runner.invoke(app, ["preview", "--image", str(tmp_path / "notes.png"), "--out", str(tmp_path / "o")])
    assert "notes.png is not an image (PNG, JPEG, WebP, BMP or another format Pillow reads)" in usage_error(result)


def test_preview_creates_its_output_folder_but_no_missing_parent(tmp_path):
    result = runner.invoke(app, ["preview", "--steps", "4", "--out", str(tmp_path / "missing" / "o")])
    assert "there is no folder" in usage_error(result) and "to create o in; create it first" in words(result.output)
    assert not (tmp_path / "missing").exists()
    assert runner.invoke(app, ["preview", "--steps", "4", "--out", str(tmp_path / "o")]).exit_code == 0
    assert (tmp_path / "o" / "filtered.png").is_file()


def test_a_bad_preset_is_named_before_anything_is_drawn(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # drawing would fail to import it
    result = runner.invoke(app, ["preview", "--preset", "wan9", "--out", str(tmp_path / "o")])
    assert "unknown preset 'wan9'" in usage_error(result)


def test_a_smooth_schedule_is_previewed_on_a_bounded_grid_of_sampled_strengths(tmp_path):
    config = tmp_path / "smooth.yaml"
    alg.ALGConfig(schedule={"kind": "linear", "end": 1.0}).save(config)
    result = runner.invoke(app, ["preview", "--config", str(config), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # 50 distinct strengths: 8 of them in two rows of four 320-pixel panels of the 512 x 320 sample
    with Image.open(tmp_path / "filtered.png") as grid:
        assert grid.size == (4 * 320, round(100 * (2 * (3.2 * 320 / 512 + 0.5) + 0.3)))


@pytest.mark.parametrize(
    ("arguments", "shift"),
    [
        (["--preset", "wan2.1"], 3.0),
        (["--preset", "hunyuanvideo"], 7.0),
        (["--preset", "cogvideox"], 1.0),  # not flow matching
        (["--preset", "wan2.1", "--shift", "5"], 5.0),
        ([], 1.0),  # the paper preset, for any model
    ],
)
def test_the_noise_level_axis_takes_the_shift_of_the_presets_model(tmp_path, monkeypatch, arguments, shift):
    used = {}
    monkeypatch.setattr(preview_command, "render_preview", lambda *_, **options: used.update(options) or ("g", "p"))
    result = runner.invoke(app, ["preview", *arguments, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert used["shift"] == shift


def test_latent_space_shows_the_unfiltered_image_at_full_resolution():
    image = torch.rand(3, 48, 64)
    original, filtered = filtered_views(image, alg.ALGConfig(space="latent"), [0.0, 1.0])
    assert torch.equal(original, image)  # not reduced to the latent grid and enlarged again
    assert filtered.shape == image.shape and not torch.equal(filtered, image)


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


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"alg-guidance {alg.__version__}\n")


@pytest.mark.parametrize(
    "command", [[], ["preview"], ["generate"], ["eval"], ["plugins"], ["presets"], ["sweep"], ["demo"]]
)
def test_help_is_wrapped_at_80_columns_and_never_cut_short(command):
    # click leaves two columns of an 80-column terminal free (the runner would force 80)
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=78)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "…" not in result.output and not [line for line in lines if re.search(r"[\w,;:]\.\.\.$", line)]
    assert max(len(line) for line in lines) <= 80
    if command == ["generate"]:
        assert "<out>-metrics.json" in result.output


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
