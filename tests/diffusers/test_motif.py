"""ALG on MotifVideo image-to-video: the image latent in channels 16:32 of `hidden_states`, CFG by its guider.

The pipeline calls its transformer once per guider batch, under the contexts "pred_cond" and "pred_uncond", and
copies each prediction (`.clone()`) before the next call: ALG's correction goes into the negative prediction
(the uncond-side form), and the guider's own combination is then ALG.
"""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeGuidance
from diffusers.hooks import HookRegistry

import alg_guidance as alg
from alg_guidance.errors import ALGError
from alg_guidance.integrations.diffusers.hook import HOOK_NAME
from tests.support import tiny_motif
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording
from tests.support.tiny_motif import FAMILIES, GUIDER_CFG

FACTOR = 0.4
LATENT = 16
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is not.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]


def image_channels(hidden, low_pass):
    """[16 latent, 16 image-latent (frame 0, zeros after), 1 mask] channels: the image latent is low-passed."""
    return torch.cat([hidden[:, :LATENT], low_pass(hidden[:, LATENT : 2 * LATENT]), hidden[:, 2 * LATENT :]], dim=1)


def alg_formula(scale):
    """The paper's rule in the u + w (c - u) form: D(I, ∅) + w (D(LP(I), c) - D(LP(I), ∅))."""
    return lambda u_orig, c_lp, u_lp: u_orig + scale * (c_lp - u_lp)


def rescaled(prediction, cond, phi):
    """Guidance rescale (Lin et al. 2023): match the prediction's std to the conditional one's, blended by phi."""
    dims = list(range(1, prediction.ndim))
    matched = prediction * cond.std(dim=dims, keepdim=True) / prediction.std(dim=dims, keepdim=True)
    return phi * matched + (1 - phi) * prediction


def expected_predictions(record, reference, combine, calls_per_step, condition=None):
    """What the scheduler must receive, from calls to an untouched copy of the transformer.

    `calls_per_step[i]` is 1 (the prompt call alone: `D(LP(I), c)`) or 2 (prompt, then negative: `combine`);
    `condition(hidden, strength)` builds the low-passed input, the latent down-up of channels 16:32 by default.
    """
    condition = condition or (lambda hidden, s: image_channels(hidden, lambda x: down_up(x, FACTOR, s)))
    expected, first = [], 0
    for strength, count in zip(STRENGTHS, calls_per_step, strict=True):
        cond, *uncond = record.calls[first : first + count]
        first += count
        low_passed = condition(cond["hidden_states"], strength) if strength else cond["hidden_states"]
        c_lp = reference(**model_inputs(cond, hidden_states=low_passed))[0]
        if not uncond:
            expected.append(c_lp)
            continue
        u_orig = reference(**model_inputs(uncond[0]))[0]
        u_lp = reference(**model_inputs(uncond[0], hidden_states=low_passed))[0]
        expected.append(combine(u_orig, c_lp, u_lp))
    assert first == len(record.calls)
    return expected


def evaluations(calls_per_step, batch_branches=True):
    """The batch of every evaluation: a filtered negative call adds u_lp (stacked, or as a call of its own)."""
    batches = []
    for count, strength in zip(calls_per_step, STRENGTHS, strict=True):
        extra = [2] if batch_branches else [1, 1]
        batches += [1] if count == 1 else [1, *(extra if strength else [1])]
    return batches


def guided_run(pipe, config=CONFIG):
    with alg.enable(pipe, config) as handle, recording(pipe) as record:
        FAMILIES["motif-i2v"].run(pipe)
    return handle, record


def assert_predictions(record, expected):
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_follows_the_alg_formula_through_the_guider(batch_branches):
    pipe = tiny_motif.motif_i2v()
    reference = copy.deepcopy(pipe.transformer)
    handle, record = guided_run(pipe, CONFIG.merge({"batch_branches": batch_branches}))
    assert handle.adapter.name == "motif-i2v" and handle.adapter.shift_target == "uncond"
    assert record.evaluations == evaluations([2] * 4, batch_branches)
    assert_predictions(record, expected_predictions(record, reference, alg_formula(GUIDER_CFG), [2] * 4))


@pytest.mark.parametrize(
    ("guider", "calls_per_step", "combine"),
    [
        pytest.param(  # pred_cond + w (pred_cond - pred_uncond) is the u + W (c - u) rule at W = w + 1
            ClassifierFreeGuidance(GUIDER_CFG, use_original_formulation=True),
            [2] * 4,
            alg_formula(GUIDER_CFG + 1),
            id="original-formulation",
        ),
        pytest.param(  # CFG for the first half of the steps only: then the prompt call alone, low-passed
            ClassifierFreeGuidance(GUIDER_CFG, stop=0.5), [2, 2, 1, 1], alg_formula(GUIDER_CFG), id="cfg-window"
        ),
        pytest.param(  # the guider's conditional prediction is c_lp as the model returned it
            ClassifierFreeGuidance(GUIDER_CFG, guidance_rescale=0.7),
            [2] * 4,
            lambda u_orig, c_lp, u_lp: rescaled(alg_formula(GUIDER_CFG)(u_orig, c_lp, u_lp), c_lp, 0.7),
            id="guidance-rescale",
        ),
        pytest.param(ClassifierFreeGuidance(1.0), [1] * 4, None, id="no-cfg"),
    ],
)
def test_every_step_follows_the_rule_for_each_classifier_free_guider(guider, calls_per_step, combine):
    pipe = tiny_motif.motif_i2v(guider)
    reference = copy.deepcopy(pipe.transformer)
    _, record = guided_run(pipe)
    assert record.evaluations == evaluations(calls_per_step)
    assert_predictions(record, expected_predictions(record, reference, combine, calls_per_step))


def test_replace_mode_low_passes_both_cfg_branches():
    pipe = tiny_motif.motif_i2v()
    reference = copy.deepcopy(pipe.transformer)
    _, record = guided_run(pipe, CONFIG.merge({"mode": "replace"}))
    assert record.evaluations == [1] * 8
    for step, strength in enumerate(STRENGTHS):
        cond, uncond = record.calls[2 * step : 2 * step + 2]
        low = lambda call, s=strength: image_channels(call["hidden_states"], lambda x: down_up(x, FACTOR, s))  # noqa: E731
        c = reference(**model_inputs(cond, hidden_states=low(cond)))[0]
        u = reference(**model_inputs(uncond, hidden_states=low(uncond)))[0]
        assert_prediction(record.predictions[step], u + GUIDER_CFG * (c - u), message=f"step {step}")


def test_a_guider_the_rule_is_not_exact_for_is_refused():
    pipe = tiny_motif.motif_i2v(AdaptiveProjectedGuidance())
    with pytest.raises(
        ALGError, match="the pipeline's guider is AdaptiveProjectedGuidance, not ClassifierFreeGuidance"
    ):
        alg.enable(pipe, CONFIG)
    assert HOOK_NAME not in HookRegistry.check_if_exists_or_initialize(pipe.transformer).hooks


def test_pixel_space_encodes_the_low_passed_first_frame_once_per_strength():
    pipe = tiny_motif.motif_i2v()
    reference = copy.deepcopy(pipe.transformer)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    _, record = guided_run(pipe, CONFIG.merge({"space": "pixel"}))
    assert len(encoded) == 1 + 1  # the pipeline's own encode, then one for strength 1
    del pipe.vae.encode

    # Independently: the preprocessed image, low-passed, through the VAE's mode and the VAE's normalization.
    pixels = pipe.video_processor.preprocess_video(tiny_motif.image(0, 32), height=32, width=32)  # [1, 3, 1, H, W]
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)

    def pixel_condition(hidden, strength):
        latent = (pipe.vae.encode(down_up(pixels, FACTOR, strength)).latent_dist.mode() - mean) / std
        condition = torch.zeros_like(hidden[:, LATENT : 2 * LATENT])
        condition[:, :, :1] = latent
        return torch.cat([hidden[:, :LATENT], condition, hidden[:, 2 * LATENT :]], dim=1)

    combine = alg_formula(GUIDER_CFG)
    assert_predictions(record, expected_predictions(record, reference, combine, [2] * 4, pixel_condition))


def test_a_bf16_pipeline_keeps_stepping_bf16_latents_under_alg():
    pipe = tiny_motif.motif_i2v().to(torch.bfloat16)
    call = FAMILIES["motif-i2v"].call()
    call = {name: value.bfloat16() if "embeds" in name else value for name, value in call.items()}
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        frames = pipe(**call).frames
    assert [prediction.dtype for prediction in record.predictions] == [torch.bfloat16] * 4
    assert frames.dtype == torch.bfloat16 and frames.isfinite().all()
