"""ALG on Cosmos Predict 2 video-to-world and Cosmos Predict 2.5: the conditioning latent frames lead `hidden_states`.

Both pipelines call the transformer for the prompt, then for the negative prompt (no cache context), turn each
output into a new tensor before the next call (Cosmos 2: the x0 prediction; Cosmos 2.5: the velocity with the
conditioning frames overwritten) and combine `c + w (c - u)`. ALG's correction goes into the negative prediction
(the uncond-side form) at the scale `w + 1`; the tests write out what the scheduler must receive.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support import tiny_cosmos
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording
from tests.support.tiny_cosmos import CFG, FAMILIES

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is not.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
NAMES = ["cosmos2", "cosmos2.5"]


def conditioning_frames(hidden, frames, strength):
    """The first `frames` latent frames of `[B, C, T, H, W]` low-passed, the others as they are."""
    if not strength:
        return hidden
    return torch.cat([down_up(hidden[:, :, :frames], FACTOR, strength), hidden[:, :, frames:]], dim=2)


def x0_of(name, record, step, prediction, frames):
    """The model's prediction of the generated frames `frames:`, out of what the scheduler received at `step`.

    Cosmos 2.5 steps with the velocity itself. Cosmos 2 turns the combined output D into the x0 prediction
    `c_skip * x + c_out * D` (c_skip = 1 - t, c_out = -t, t = sigma / (sigma + 1)) and steps with `(x - x0) / sigma`;
    that division by a small sigma (late steps) cancels digits, so the comparison maps it back: `x0 = x - sigma *
    input`, with the latents `x` and the sigma the scheduler stepped.
    """
    if name == "cosmos2.5":
        return prediction[:, :, frames:]
    sigma, x = record.sigmas[step].double(), record.samples[step][:, :, frames:].double()
    return (x - sigma * prediction[:, :, frames:].double()).float()


def expected_x0(name, record, step, model_output, frames):
    """The x0 prediction (Cosmos 2) or velocity (Cosmos 2.5) the pipeline makes of the combined output D."""
    if name == "cosmos2.5":
        return model_output[:, :, frames:]
    sigma, x = record.sigmas[step].double(), record.samples[step][:, :, frames:].double()
    t = sigma / (sigma + 1)
    return ((1 - t) * x - t * model_output[:, :, frames:].double()).float()


def expected_predictions(name, record, reference, frames, scale, calls_per_step=2):
    """Per step, the x0 (or velocity) of the generated frames, from calls to an untouched copy of the transformer."""
    expected = []
    for step, strength in enumerate(STRENGTHS):
        cond, *uncond = record.calls[calls_per_step * step : calls_per_step * (step + 1)]
        low_passed = conditioning_frames(cond["hidden_states"], frames, strength)
        c_lp = reference(**model_inputs(cond, hidden_states=low_passed))[0]
        if uncond:
            u_orig = reference(**model_inputs(uncond[0]))[0]
            u_lp = reference(**model_inputs(uncond[0], hidden_states=low_passed))[0]
            combined = u_orig + scale * (c_lp - u_lp)  # ALG in the u + W (c - u) form
        else:
            combined = c_lp
        expected.append(expected_x0(name, record, step, combined, frames))
    assert len(record.calls) == calls_per_step * len(STRENGTHS)
    return expected


def video(frames=5, size=32):
    """A random conditioning video of `frames` RGB frames."""
    pixels = np.random.default_rng(1).random((frames, size, size, 3)).astype(np.float32)
    return [pixels[i] for i in range(frames)]


def video_call(name):
    """Video to world: 5 frames condition two latent frames (Cosmos 2.5: `num_latent_conditional_frames=2`)."""
    extra = {"num_latent_conditional_frames": 2} if name == "cosmos2.5" else {}
    return FAMILIES[name].call(image=None, video=video(), **extra)


def run(name, config, call=None):
    """Run under ALG; the recording also keeps the latents each step started from and the scheduler's sigmas."""
    pipe = FAMILIES[name].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, config) as handle, recording(pipe) as record:
        recorded_step = pipe.scheduler.step
        record.samples = []

        def step(model_output, timestep, sample, *args, **kwargs):
            record.samples.append(sample.clone())
            return recorded_step(model_output, timestep, sample, *args, **kwargs)

        pipe.scheduler.step = step
        pipe(**(call or FAMILIES[name].call()))
    record.sigmas = pipe.scheduler.sigmas
    return handle, record, reference


def assert_predictions(name, record, expected, frames):
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(x0_of(name, record, step, got, frames), want, message=f"step {step}")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_follows_the_alg_formula_at_w_plus_1(name, batch_branches):
    handle, record, reference = run(name, CONFIG.merge({"batch_branches": batch_branches}))
    assert handle.adapter.name == name and handle.adapter.shift_target == "uncond"
    extra = [2] if batch_branches else [1, 1]
    assert record.evaluations == [1, *extra] * 3 + [1, 1]
    assert_predictions(name, record, expected_predictions(name, record, reference, 1, CFG + 1), 1)


@pytest.mark.parametrize("name", NAMES)
def test_video_to_world_low_passes_every_conditioning_frame(name):
    _, record, reference = run(name, CONFIG, video_call(name))
    timestep = record.calls[0]["timestep"][0, 0, :, 0, 0]
    assert (timestep[:2] < 0.01).all() and (timestep[2:] > 0.5).all()  # two conditioning latent frames
    assert_predictions(name, record, expected_predictions(name, record, reference, 2, CFG + 1), 2)


@pytest.mark.parametrize("name", NAMES)
def test_the_conditioning_frames_prediction_stays_the_pipelines_own(name):
    plain = FAMILIES[name].make()
    with recording(plain) as untouched:
        FAMILIES[name].run(plain)
    _, record, _ = run(name, CONFIG)
    for got, want in zip(record.predictions, untouched.predictions, strict=True):
        assert torch.equal(got[:, :, :1], want[:, :, :1])  # (x - condition) / sigma: ALG never reaches it
    assert not torch.equal(record.predictions[0][:, :, 1:], untouched.predictions[0][:, :, 1:])


@pytest.mark.parametrize("name", NAMES)
def test_without_cfg_one_low_passed_evaluation_per_filtered_step(name):
    call = FAMILIES[name].call(guidance_scale=1.0)
    _, record, reference = run(name, CONFIG, call)
    assert record.evaluations == [1] * 4
    assert_predictions(name, record, expected_predictions(name, record, reference, 1, None, calls_per_step=1), 1)


def test_cosmos2_5_text_to_world_is_refused_there_is_no_image_to_low_pass():
    pipe = tiny_cosmos.cosmos2_5_predict()
    with alg.enable(pipe, CONFIG), pytest.raises(ALGError, match="no image or video condition"):
        pipe(**FAMILIES["cosmos2.5"].call(image=None))
