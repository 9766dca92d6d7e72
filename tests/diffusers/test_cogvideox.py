"""ALG on CogVideoX 1.0 and 1.5 image-to-video: batched CFG, dynamic CFG, schedulers without a step index."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

import alg_guidance as alg
from alg_guidance.adapters.base import Capture
from alg_guidance.errors import ALGError
from alg_guidance.presets import get_preset
from tests.support import tiny_cogvideox
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording

FACTOR = 0.25
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})
VERSIONS = {"1.0": tiny_cogvideox.cogvideox, "1.5": tiny_cogvideox.cogvideox15}
BATCHED_INPUTS = ("hidden_states", "timestep", "encoder_hidden_states")


def run(pipe, scales: list[float] | None = None, **overrides) -> torch.Tensor:
    """The latent video of one run; `scales` collects the guidance scale the pipeline used at each step."""
    if scales is not None:
        overrides["callback_on_step_end"] = lambda pipe, step, t, tensors: scales.append(pipe.guidance_scale) or {}
    return pipe(**tiny_cogvideox.call_kwargs(**overrides)).frames


def branches(call: dict) -> list[dict]:
    """A recorded `[uncond, cond]` call as the inputs of one call per branch."""
    inputs = model_inputs(call)
    return [{**inputs, **{name: inputs[name].chunk(2)[half] for name in BATCHED_INPUTS}} for half in (0, 1)]


def latent_low_pass(hidden: torch.Tensor, strength: float) -> torch.Tensor:
    """`hidden_states` [B, F, 2C, H, W] with its image-latent half (channels C:) low-passed."""
    channels = hidden.shape[2] // 2
    return torch.cat([hidden[:, :, :channels], down_up(hidden[:, :, channels:], FACTOR, strength)], dim=2)


def expected_predictions(record, reference, scales, strengths=STRENGTHS, low_pass=latent_low_pass):
    """ALG from an untouched copy of the transformer: D(I, ∅) + w (D(LP(I), c) - D(LP(I), ∅)), w per step."""
    expected = []
    for call, scale, strength in zip(record.calls, scales, strengths, strict=True):
        uncond, cond = branches(call)
        u_orig = reference(**uncond)[0]
        u_lp = reference(**{**uncond, "hidden_states": low_pass(uncond["hidden_states"], strength)})[0]
        c_lp = reference(**{**cond, "hidden_states": low_pass(cond["hidden_states"], strength)})[0]
        expected.append(u_orig.float() + scale * (c_lp - u_lp).float())
    return expected


def assert_predictions(record, expected) -> None:
    assert len(record.predictions) == len(expected)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("scheduler", tiny_cogvideox.SCHEDULERS)
@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_follows_the_alg_formula(version, scheduler, batch_branches):
    pipe = VERSIONS[version](scheduler)
    reference = copy.deepcopy(pipe.transformer)
    scales = []
    with (
        alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})) as handle,
        recording(pipe) as record,
    ):
        run(pipe, scales)
    assert handle.adapter.name == "cogvideox"
    assert scales == [tiny_cogvideox.GUIDANCE] * 4
    assert_predictions(record, expected_predictions(record, reference, scales))


@pytest.mark.parametrize("version", VERSIONS)
def test_dynamic_cfg_follows_the_alg_formula_with_each_steps_own_scale(version):
    pipe = VERSIONS[version]()
    reference = copy.deepcopy(pipe.transformer)
    scales = []
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        run(pipe, scales, use_dynamic_cfg=True)
    assert len(set(scales)) == 4  # the pipeline recomputed its scale at every step
    assert_predictions(record, expected_predictions(record, reference, scales))


@pytest.mark.parametrize("version", VERSIONS)
def test_the_cogvideox_preset_is_the_default_for_both_versions(version):
    pipe = VERSIONS[version]()
    with alg.enable(pipe) as handle:
        assert handle.adapter.name == "cogvideox"
        assert handle.config == get_preset("cogvideox").config


@pytest.mark.parametrize(
    ("overrides", "call", "evaluations"),
    [
        ({}, {}, [3, 3, 3, 2]),  # one batch of [u_orig, u_lp, c_lp] per filtered step, [u, c] after
        ({"batch_branches": False}, {}, [2, 1, 2, 1, 2, 1, 2]),  # u_lp in a call of its own
        ({"schedule": {"kind": "constant", "value": 0.0}}, {}, [2, 2, 2, 2]),  # plain CFG
        ({}, {"guidance_scale": 1.0}, [1, 1, 1, 1]),  # no CFG: auto becomes replace
        ({"mode": "replace"}, {}, [2, 2, 2, 2]),
    ],
)
def test_evaluations_per_step(overrides, call, evaluations):
    pipe = tiny_cogvideox.cogvideox()
    with alg.enable(pipe, CONFIG.merge(overrides)), recording(pipe) as record:
        run(pipe, **call)
    assert record.evaluations == evaluations


def test_without_cfg_auto_mode_replaces_the_condition_in_one_evaluation():
    pipe = tiny_cogvideox.cogvideox()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        run(pipe, guidance_scale=1.0)
    for call, strength, got in zip(record.calls, STRENGTHS, record.predictions, strict=True):
        inputs = model_inputs(call)
        want = reference(**{**inputs, "hidden_states": latent_low_pass(inputs["hidden_states"], strength)})[0]
        assert_prediction(got, want.float())


def test_replace_mode_with_cfg_low_passes_both_branches():
    pipe = tiny_cogvideox.cogvideox15()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG.merge({"mode": "replace"})), recording(pipe) as record:
        run(pipe)
    uncond, cond = branches(record.calls[0])
    u_lp = reference(**{**uncond, "hidden_states": latent_low_pass(uncond["hidden_states"], 1.0)})[0]
    c_lp = reference(**{**cond, "hidden_states": latent_low_pass(cond["hidden_states"], 1.0)})[0]
    assert_prediction(record.predictions[0], (u_lp + tiny_cogvideox.GUIDANCE * (c_lp - u_lp)).float())


def test_mode_alg_without_cfg_is_refused_before_anything_runs():
    pipe = tiny_cogvideox.cogvideox()
    with (
        alg.enable(pipe, CONFIG.merge({"mode": "alg"})),
        recording(pipe) as record,
        pytest.raises(ALGError, match="use mode 'auto' or 'replace'"),
    ):
        run(pipe, guidance_scale=1.0)
    assert record.evaluations == []


def pixel_latent(pipe, strength: float) -> torch.Tensor:
    """The run's image low-passed in pixels, encoded to the VAE posterior's mean and scaled: [B, 1, C, H, W]."""
    pixels = pipe.video_processor.preprocess(tiny_cogvideox.image(0, size=tiny_cogvideox.SIZE))
    latent = pipe.vae.encode(down_up(pixels, FACTOR, strength)[:, :, None]).latent_dist.mean.transpose(1, 2)
    scale = pipe.vae.config.scaling_factor
    return latent / scale if pipe.vae.config.invert_scale_latents else latent * scale


@pytest.mark.parametrize("version", VERSIONS)
def test_pixel_space_encodes_the_low_passed_image_once_per_strength(version):
    pipe = VERSIONS[version]()
    reference = copy.deepcopy(pipe.transformer)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    config = CONFIG.merge({"space": "pixel", "schedule": {"kind": "linear", "end": 0.5}})
    scales = []
    with alg.enable(pipe, config), recording(pipe) as record:
        run(pipe, scales)
    strengths = [1.0, 1 / 3, 0.0, 0.0]  # linear ramp to 0 at progress 0.5: two distinct non-zero strengths
    assert len(encoded) == 1 + 2  # the pipeline's own encode, then one per distinct strength
    hidden = record.calls[0]["hidden_states"]
    assert not hidden[:, 1:, hidden.shape[2] // 2 :].any()  # the pipeline's image latent: frame 0, zeros after

    def pixel_low_pass(hidden, strength):
        """The image-latent half replaced by the encoded low-passed image in frame 0, zeros after."""
        if strength == 0:
            return hidden
        channels = hidden.shape[2] // 2
        condition = torch.zeros_like(hidden[:, :, channels:])
        condition[:, :1] = pixel_latent(pipe, strength)
        return torch.cat([hidden[:, :, :channels], condition], dim=2)

    expected = expected_predictions(record, reference, scales, strengths, pixel_low_pass)
    assert_predictions(record, expected)


def test_pixel_space_draws_no_random_numbers():
    """The pipeline samples its own image latent with the generator; the low-passed ones touch no generator."""
    untouched_generator, guided_generator = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    untouched = run(tiny_cogvideox.cogvideox("1.0", "dpm"), generator=untouched_generator)
    pipe = tiny_cogvideox.cogvideox("1.0", "dpm")
    global_state = torch.random.get_rng_state()
    with alg.enable(pipe, CONFIG.merge({"space": "pixel"})):
        guided = run(pipe, generator=guided_generator)
    assert not torch.equal(guided, untouched)
    assert torch.equal(guided_generator.get_state(), untouched_generator.get_state())
    assert torch.equal(torch.random.get_rng_state(), global_state)


def test_pixel_condition_repeats_the_frame_prepare_latents_prepends_for_a_temporal_patch():
    """Called with an odd latent frame count, CogVideoX 1.5's prepare_latents leads with a copy of frame 0."""
    pipe = tiny_cogvideox.cogvideox15()
    pixels = pipe.video_processor.preprocess(tiny_cogvideox.image(0, size=tiny_cogvideox.SIZE))
    size = tiny_cogvideox.SIZE
    arguments = (pixels, 1, 4, 9, size, size, torch.float32, "cpu", torch.Generator())
    result = pipe.prepare_latents(*arguments)
    _, prepared = result
    bound = inspect.signature(pipe.prepare_latents).bind(*arguments)
    bound.apply_defaults()
    captures = {"prepare_latents": Capture(dict(bound.arguments), result)}
    adapter = alg.default_registry().adapter("cogvideox")()
    condition = adapter.encode_pixels(pipe, captures, lambda image: down_up(image, FACTOR, 1.0))
    latent = pixel_latent(pipe, 1.0)
    assert prepared.shape == condition.shape == (1, 4, 4, 8, 8)  # 3 latent frames, led by a repeated one
    assert torch.equal(prepared[:, 0], prepared[:, 1]) and not prepared[:, 2:].any()
    assert_prediction(condition[:, :2], torch.cat([latent, latent], dim=1))
    assert not condition[:, 2:].any()
