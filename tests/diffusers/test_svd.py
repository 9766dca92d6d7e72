"""ALG on Stable Video Diffusion: batched CFG whose unconditional half has no image, per-frame guidance scale."""

from __future__ import annotations

import copy

import pytest
import torch

import alg_guidance as alg
from alg_guidance.errors import ALGError
from alg_guidance.registry import default_registry
from tests.support import tiny_svd
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})
LATENT_CHANNELS = 4  # sample = cat([latents, image_latents], dim=2) on [B, F, C, H, W]
BATCH_INPUTS = ("sample", "encoder_hidden_states", "added_time_ids")  # the timestep is a scalar
NOISE_AUG_STRENGTH = 0.02  # the pipeline's default


def run(pipe, **overrides):
    """The latent video of one run."""
    return pipe(**tiny_svd.call_kwargs(**overrides)).frames


def recorded_run(pipe, config, **overrides):
    """The recording of one run with ALG enabled by `config`."""
    with alg.enable(pipe, config), recording(pipe, ("unet",), counted="time_embedding") as record:
        run(pipe, **overrides)
    return record


def per_frame_scale(low=tiny_svd.MIN_GUIDANCE, high=tiny_svd.MAX_GUIDANCE, frames=tiny_svd.FRAMES):
    """The pipeline's guidance scale, written independently: linear from the first frame to the last."""
    return torch.tensor([low + (high - low) * frame / (frames - 1) for frame in range(frames)]).view(1, -1, 1, 1, 1)


def halves(call):
    """The unconditional and conditional inputs of a recorded `[uncond, cond]` call."""
    uncond, cond = dict(call), dict(call)
    for name in BATCH_INPUTS:
        uncond[name], cond[name] = call[name].chunk(2)
    return uncond, cond


def with_condition(inputs, condition):
    """Denoiser inputs with `condition(image_latents)` in place of the image-latent channels of every frame."""
    sample = inputs["sample"]
    image_latents = sample[:, :, LATENT_CHANNELS:]
    return model_inputs(inputs, sample=torch.cat([sample[:, :, :LATENT_CHANNELS], condition(image_latents)], dim=2))


def latent_low_pass(strength):
    """The paper's down-up filter at `strength`, applied to an image latent."""
    return lambda image_latents: down_up(image_latents, FACTOR, strength)


def alg_predictions(record, reference, strengths, cond_condition=latent_low_pass):
    """u_orig + w (c_lp - u_lp) per step from an untouched UNet; u_lp low-passes the (zero) unconditional image."""
    expected = []
    for call, strength in zip(record.calls, strengths, strict=True):
        uncond, cond = halves(call)
        c_lp = reference(**with_condition(cond, cond_condition(strength)))[0]
        u_orig = reference(**model_inputs(uncond))[0]
        u_lp = reference(**with_condition(uncond, latent_low_pass(strength)))[0]
        expected.append(u_orig + per_frame_scale() * (c_lp - u_lp))
    return expected


def assert_predictions(record, expected):
    """Every step's prediction equals the expected one."""
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


def test_the_svd_adapter_guides_the_unet_with_the_svd_preset():
    pipe = tiny_svd.svd()
    with alg.enable(pipe) as handle:
        assert handle.adapter.name == "svd"
        assert handle.adapter.denoisers(pipe) == [pipe.unet]
        assert handle.config == alg.get_preset("svd").config


@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_follows_the_alg_formula_with_per_frame_scales(batch_branches):
    pipe = tiny_svd.svd()
    reference = copy.deepcopy(pipe.unet)
    record = recorded_run(pipe, CONFIG.merge({"batch_branches": batch_branches}))
    assert len(record.calls) == 4
    assert torch.allclose(pipe.guidance_scale, per_frame_scale())  # w grows from the first frame to the last
    assert_predictions(record, alg_predictions(record, reference, STRENGTHS))


def test_the_unconditional_image_is_zero_so_low_passing_it_changes_nothing():
    pipe = tiny_svd.svd()
    with recording(pipe, ("unet",), counted="time_embedding") as record:
        run(pipe)
    uncond, cond = halves(record.calls[0])
    zero_image = uncond["sample"][:, :, LATENT_CHANNELS:]
    assert not zero_image.any() and cond["sample"][:, :, LATENT_CHANNELS:].any()
    assert not uncond["encoder_hidden_states"].any()
    registry = default_registry()
    for kind in ("downsample", "gaussian", "butterworth"):
        assert torch.equal(registry.filter(kind)()(zero_image, 1.0), zero_image), kind


@pytest.mark.parametrize("batch_branches", [True, False])
def test_each_step_is_one_call_of_two_videos_filtered_or_not(batch_branches):
    pipe = tiny_svd.svd()
    record = recorded_run(pipe, CONFIG.merge({"batch_branches": batch_branches}))
    assert record.evaluations == [2, 2, 2, 2]  # u_orig and c_lp; u_lp would equal u_orig, so it is not run
    assert recorded_run(pipe, OFF).evaluations == [2, 2, 2, 2]


def test_replace_mode_filters_the_zero_image_too_and_so_equals_alg():
    pipe = tiny_svd.svd()
    reference = copy.deepcopy(pipe.unet)
    record = recorded_run(pipe, CONFIG.merge({"mode": "replace"}))
    assert record.evaluations == [2, 2, 2, 2]
    for step, (call, strength) in enumerate(zip(record.calls, STRENGTHS, strict=True)):
        uncond, cond = halves(call)
        c_lp = reference(**with_condition(cond, latent_low_pass(strength)))[0]
        u_lp = reference(**with_condition(uncond, latent_low_pass(strength)))[0]
        assert_prediction(record.predictions[step], u_lp + per_frame_scale() * (c_lp - u_lp), message=f"step {step}")
    alg_record = recorded_run(pipe, CONFIG)
    for got, want in zip(record.predictions, alg_record.predictions, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("min_guidance_scale", [1.0, 0.5])
def test_without_cfg_auto_mode_replaces_the_condition_in_one_evaluation(min_guidance_scale):
    pipe = tiny_svd.svd()
    reference = copy.deepcopy(pipe.unet)
    record = recorded_run(pipe, CONFIG, min_guidance_scale=min_guidance_scale, max_guidance_scale=1.0)
    assert record.evaluations == [1, 1, 1, 1]
    for step, (call, strength) in enumerate(zip(record.calls, STRENGTHS, strict=True)):
        c_lp = reference(**with_condition(call, latent_low_pass(strength)))[0]
        assert_prediction(record.predictions[step], c_lp, message=f"step {step}")


def test_mode_alg_without_cfg_is_refused_before_anything_runs():
    pipe = tiny_svd.svd()
    with (
        alg.enable(pipe, CONFIG.merge({"mode": "alg"})),
        recording(pipe, ("unet",), counted="time_embedding") as record,
        pytest.raises(ALGError, match="use mode 'auto' or 'replace'"),
    ):
        run(pipe, min_guidance_scale=1.0, max_guidance_scale=1.0)
    assert record.evaluations == []


def test_the_adaptive_schedule_follows_the_euler_edm_noise_level():
    pipe = tiny_svd.svd()
    reference = copy.deepcopy(pipe.unet)
    threshold = 0.9
    record = recorded_run(pipe, CONFIG.merge({"schedule": {"kind": "adaptive", "threshold": threshold}}))
    sigmas = pipe.scheduler.sigmas[:4].tolist()  # Karras sigmas from 700 down to 0.002
    strengths = [1.0 if sigma / (1 + sigma) >= threshold else 0.0 for sigma in sigmas]
    assert strengths == [1.0, 1.0, 0.0, 0.0]
    assert_predictions(record, alg_predictions(record, reference, strengths))


def noise_augmented_pixels(pipe, seed=0):
    """The image the pipeline encodes, rebuilt independently: preprocessed, plus the run's first noise draw."""
    pixels = pipe.video_processor.preprocess(tiny_svd.image(seed, size=tiny_svd.SIZE), tiny_svd.SIZE, tiny_svd.SIZE)
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(seed))
    return pixels + NOISE_AUG_STRENGTH * noise


@pytest.mark.parametrize("videos", [1, 2])
def test_pixel_space_encodes_the_low_passed_noise_augmented_image_once_per_strength(videos):
    pipe = tiny_svd.svd()
    reference = copy.deepcopy(pipe.unet)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    config = CONFIG.merge({"space": "pixel", "schedule": {"kind": "linear", "end": 0.5}})
    rng_state = torch.random.get_rng_state()
    record = recorded_run(pipe, config, num_videos_per_prompt=videos)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # no noise drawn outside the run's generator
    strengths = [1.0, 1 / 3, 0.0, 0.0]  # linear ramp to 0 at progress 0.5: two distinct non-zero strengths
    assert len(encoded) == 1 + 2  # the pipeline's own encode, then one per distinct strength

    pixels = noise_augmented_pixels(pipe)

    def pixel_condition(strength):
        latent = encode(down_up(pixels, FACTOR, strength)).latent_dist.mode()
        return lambda image_latents: latent.unsqueeze(1).expand_as(image_latents)

    _, cond = halves(record.calls[0])
    assert torch.equal(with_condition(cond, pixel_condition(0.0))["sample"], cond["sample"])
    expected = alg_predictions(record, reference, strengths, cond_condition=pixel_condition)
    assert_predictions(record, expected)


def test_pixel_space_encodes_in_float32_with_a_float16_vae_that_asks_for_it():
    pipe = tiny_svd.svd()
    pipe.vae.to(torch.float16)
    assert pipe.vae.config.force_upcast
    dtypes = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: dtypes.append(x.dtype) or encode(x, *args, **kwargs)
    recorded_run(pipe, CONFIG.merge({"space": "pixel"}))
    assert dtypes == [torch.float32, torch.float32]  # the pipeline's encode, then the low-passed image's
    assert pipe.vae.dtype == torch.float16
