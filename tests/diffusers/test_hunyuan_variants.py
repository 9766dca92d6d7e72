"""ALG on FramePack, SkyReels-V1-Hunyuan I2V and SkyReels-V2 diffusion-forcing I2V, against independent model calls.

FramePack and SkyReels-V1-Hunyuan call their transformer once per step (embedded guidance), or positive then
negative with true CFG (no cache context); FramePack restarts its scheduler in every section. Diffusion forcing
calls it under "cond" and "uncond" once per row of its step matrix and steps one scheduler copy per latent frame.
"""

from __future__ import annotations

import copy

import pytest
import torch

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording
from tests.support.tiny_hunyuan import LATENT_CHANNELS, TRUE_CFG
from tests.support.tiny_hunyuan_variants import DF_CFG, FAMILIES, image

FACTOR = 0.4
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
FRAMEPACK_STRENGTHS = [1.0, 1.0, 0.0] * 2  # 3 steps (progress 0, 0.5, 1) in each of 2 sections
STRENGTHS = [1.0, 1.0, 1.0, 0.0]  # 4 steps, progress 0, 1/3, 2/3, 1


def low_passed_first_frame(x, strength):
    """Latent frame 0 of `x` low-passed (FramePack's image prefix in latents_clean; diffusion forcing's prefix)."""
    return torch.cat([down_up(x[:, :, :1], FACTOR, strength), x[:, :, 1:]], dim=2)


def low_passed_image_channels(x, strength):
    """SkyReels-V1-Hunyuan: channels [4 latent, 4 image latent]; the image latent is filtered."""
    c = LATENT_CHANNELS
    return torch.cat([x[:, :c], down_up(x[:, c:], FACTOR, strength)], dim=1)


CONDITIONS = {
    "hunyuanvideo-framepack": ("latents_clean", low_passed_first_frame),
    "hunyuanvideo-skyreels": ("hidden_states", low_passed_image_channels),
    "skyreels-v2-df": ("hidden_states", low_passed_first_frame),
}


def expected_predictions(name, record, reference, strengths, scale, calls_per_step, put=None):
    """ALG from calls to an untouched transformer: D(I, ∅) + w (D(LP(I), c) - D(LP(I), ∅)), or D(LP(I), c) alone."""
    family = FAMILIES[name]
    key, low_pass = CONDITIONS[family.adapter]
    put = put or low_pass
    expected, first = [], 0
    for strength in strengths:
        cond, *uncond = record.calls[first : first + calls_per_step]
        first += calls_per_step
        low_passed = {key: put(cond[key], strength) if strength else cond[key]}
        c_lp = reference(**model_inputs(cond, **low_passed))[0]
        if not uncond:
            expected.append(c_lp)
            continue
        u_orig = reference(**model_inputs(uncond[0]))[0]
        u_lp = reference(**model_inputs(uncond[0], **low_passed))[0]
        expected.append(u_orig + scale * (c_lp - u_lp))
    assert first == len(record.calls)
    return expected


def guided_run(name, config, pipe=None, **overrides):
    pipe = pipe or FAMILIES[name].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, config) as handle, recording(pipe) as record:
        FAMILIES[name].run(pipe, **overrides)
    assert handle.adapter.name == FAMILIES[name].adapter
    return pipe, reference, record


def per_row(record, rows, frames):
    """Diffusion forcing's per-frame scheduler inputs, stacked back into one prediction per row."""
    predictions = record.predictions
    assert len(predictions) == rows * frames
    return [torch.stack(predictions[row * frames : (row + 1) * frames], dim=2) for row in range(rows)]


@pytest.mark.parametrize("batch_branches", [True, False])
@pytest.mark.parametrize("name", ["hunyuanvideo-framepack-true-cfg", "hunyuanvideo-skyreels"])
def test_true_cfg_follows_the_alg_formula_at_every_step(name, batch_branches):
    strengths = FRAMEPACK_STRENGTHS if "framepack" in name else STRENGTHS
    _, reference, record = guided_run(name, CONFIG.merge({"batch_branches": batch_branches}))
    filtered = [1, 2] if batch_branches else [1, 1, 1]
    assert record.evaluations == [n for s in strengths for n in (filtered if s else [1, 1])]
    expected = expected_predictions(name, record, reference, strengths, TRUE_CFG, 2)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


@pytest.mark.parametrize("name", ["hunyuanvideo-framepack", "hunyuanvideo-skyreels"])
def test_embedded_guidance_low_passes_the_one_evaluation_of_each_filtered_step(name):
    overrides = {} if "framepack" in name else {"negative_prompt_embeds": None, "negative_pooled_prompt_embeds": None}
    strengths = FRAMEPACK_STRENGTHS if "framepack" in name else STRENGTHS
    _, reference, record = guided_run(name, CONFIG, **overrides)
    assert record.evaluations == [1] * len(strengths)
    expected = expected_predictions(name, record, reference, strengths, None, 1)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


def test_framepack_low_passes_the_image_prefix_only_never_the_history():
    pipe = FAMILIES["hunyuanvideo-framepack"].make()
    _, _, plain = guided_run("hunyuanvideo-framepack", CONFIG.merge({"schedule": {"kind": "constant", "value": 0}}))
    _, _, record = guided_run("hunyuanvideo-framepack", CONFIG, pipe)
    second_section = record.calls[3]
    history = second_section["latents_clean"][:, :, 1:]
    assert history.abs().sum() > 0  # the second section's history is the generated first section
    for got, want in zip(record.calls, plain.calls, strict=True):  # the pipeline's own inputs stay its own
        assert torch.equal(got["latents_clean"][:, :, :1], want["latents_clean"][:, :, :1])


def test_diffusion_forcing_follows_the_alg_formula_with_each_branch_called_alone():
    pipe, reference, record = guided_run("skyreels-v2-df", CONFIG)  # batch_branches=True: fps cannot be stacked
    assert pipe.num_timesteps == 4
    assert record.evaluations == [1, 1, 1] * 3 + [1, 1]
    assert all(call["timestep"][:, 0].eq(0).all() for call in record.calls)  # the image prefix is kept clean
    expected = expected_predictions("skyreels-v2-df", record, reference, STRENGTHS, DF_CFG, 2)
    for row, (got, want) in enumerate(zip(per_row(record, 4, 2), expected, strict=True)):
        assert_prediction(got, want[:, :, 1:], message=f"row {row}")  # the prefix frame is never stepped


def test_diffusion_forcing_low_passes_the_last_image_at_the_end_too():
    def both_ends(x, strength):
        ends = down_up(torch.cat([x[:, :, :1], x[:, :, -1:]], dim=2), FACTOR, strength)
        return torch.cat([ends[:, :, :1], x[:, :, 1:-1], ends[:, :, 1:]], dim=2)

    _, reference, record = guided_run("skyreels-v2-df", CONFIG, last_image=image(seed=1))
    assert record.calls[0]["hidden_states"].shape[2] == 4  # prefix, two generated frames, the last image
    expected = expected_predictions("skyreels-v2-df", record, reference, STRENGTHS, DF_CFG, 2, both_ends)
    for row, (got, want) in enumerate(zip(per_row(record, 4, 2), expected, strict=True)):
        assert_prediction(got, want[:, :, 1:-1], message=f"row {row}")


def test_asynchronous_diffusion_forcing_counts_the_rows_of_its_step_matrix():
    pipe = FAMILIES["skyreels-v2-df"].make()
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        FAMILIES["skyreels-v2-df"].run(pipe, ar_step=2, causal_block_size=1)
    rows = pipe.num_timesteps
    assert rows > 4  # staggered frames: more rows than inference steps
    filtered = [row / (rows - 1) <= 0.7 for row in range(rows)]
    assert record.evaluations == [n for active in filtered for n in ([1, 1, 1] if active else [1, 1])]


def test_diffusion_forcing_refuses_a_long_video_before_any_evaluation():
    pipe = FAMILIES["skyreels-v2-df"].make()
    long_video = {"num_frames": 17, "base_num_frames": 9, "overlap_history": 5, "ar_step": 4, "causal_block_size": 1}
    with (
        alg.enable(pipe, CONFIG),
        recording(pipe) as record,
        pytest.raises(ALGError, match="serves videos sampled in one iteration"),
    ):
        FAMILIES["skyreels-v2-df"].run(pipe, **long_video)
    assert record.evaluations == []


def test_diffusion_forcing_pixel_space_encodes_the_low_passed_image_once_per_strength():
    pipe = FAMILIES["skyreels-v2-df"].make()
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    config = CONFIG.merge({"space": "pixel", "schedule": {"kind": "linear", "end": 0.5}})
    _, reference, record = guided_run("skyreels-v2-df", config, pipe)
    assert len(encoded) == 1 + 2  # the pipeline's own encode, then one per distinct strength
    del pipe.vae.encode

    # Independently: the preprocessed image, low-passed, through the VAE's mode and the latent normalization.
    pixels = pipe.video_processor.preprocess(image(0), height=64, width=64).float()
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)

    def pixel_condition(x, strength):
        latent = pipe.vae.encode(down_up(pixels, FACTOR, strength).unsqueeze(2)).latent_dist.mode()
        return torch.cat([(latent - mean) / std, x[:, :, 1:]], dim=2)

    strengths = [1.0, 1 / 3, 0.0, 0.0]
    expected = expected_predictions("skyreels-v2-df", record, reference, strengths, DF_CFG, 2, pixel_condition)
    for row, (got, want) in enumerate(zip(per_row(record, 4, 2), expected, strict=True)):
        assert_prediction(got, want[:, :, 1:], message=f"row {row}")


@pytest.mark.parametrize("name", ["hunyuanvideo-framepack", "hunyuanvideo-skyreels"])
def test_posterior_sampled_image_latents_refuse_pixel_space(name):
    pipe = FAMILIES[name].make()
    with pytest.raises(ALGError, match="latent space only"), alg.enable(pipe, CONFIG.merge({"space": "pixel"})):
        FAMILIES[name].run(pipe)
