"""ALG on EasyAnimate inpaint used for image-to-video: batched CFG, the condition in `inpaint_latents`.

The condition's place is written out here independently of the adapter: `inpaint_latents` is `[mask latents (4),
masked-video latents (4)]` along the channels; the masked video holds the image as its first frame.
"""

from __future__ import annotations

import copy

import pytest
import torch

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support import tiny_easyanimate
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording

FACTOR = 0.4
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
SCALE = 5.0


def low_passed(call, strength):
    """`inpaint_latents` with its masked-video channels (4:8) low-passed; the mask channels (0:4) kept."""
    inpaint = call["inpaint_latents"]
    return torch.cat([inpaint[:, :4], down_up(inpaint[:, 4:], FACTOR, strength)], dim=1)


def expected_predictions(record, reference, strengths, cfg=True):
    """What the pipeline's `u + w (c - u)` must see: u_orig and c_lp + u_orig - u_lp, from an untouched transformer."""
    expected = []
    for call, strength in zip(record.calls, strengths, strict=True):
        lp = reference(**model_inputs(call, inpaint_latents=low_passed(call, strength)))[0]
        if not cfg:
            expected.append(lp)
            continue
        orig = reference(**model_inputs(call))[0]
        u_orig, u_lp, c_lp = orig[:1], lp[:1], lp[1:]
        expected.append(u_orig + SCALE * (c_lp - u_lp))
    return expected


@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_follows_the_alg_formula(batch_branches):
    pipe = tiny_easyanimate.easyanimate_i2v()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})) as handle, recording(pipe) as record:
        pipe(**tiny_easyanimate.easyanimate_call())
    assert handle.adapter.name == "easyanimate-i2v"
    assert record.evaluations == ([3] if batch_branches else [2, 1]) * 3 + [2]
    expected = expected_predictions(record, reference, STRENGTHS)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


def test_without_cfg_the_condition_is_replaced_in_one_evaluation():
    pipe = tiny_easyanimate.easyanimate_i2v()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        pipe(**tiny_easyanimate.easyanimate_call(guidance_scale=1.0))
    assert record.evaluations == [1, 1, 1, 1]
    expected = expected_predictions(record, reference, STRENGTHS, cfg=False)
    for got, want in zip(record.predictions, expected, strict=True):
        assert_prediction(got, want)


def test_the_image_frame_is_filtered_and_the_mask_left_alone():
    pipe = tiny_easyanimate.easyanimate_i2v()
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        pipe(**tiny_easyanimate.easyanimate_call())
    inpaint = record.calls[0]["inpaint_latents"]
    filtered = low_passed(record.calls[0], 1.0)
    assert not torch.equal(filtered[:, 4:, 0], inpaint[:, 4:, 0])  # latent frame 0: the image


def test_a_transformer_without_inpaint_channels_is_refused():
    family = tiny_easyanimate.easyanimate_i2v()
    torch.manual_seed(0)
    transformer = type(family.transformer)(**{**family.transformer.config, "in_channels": 4})
    pipe = type(family)(**{**family.components, "transformer": transformer})
    with pytest.raises(ALGError, match="pastes the image latent into the latents after every step"):
        alg.enable(pipe, CONFIG)
