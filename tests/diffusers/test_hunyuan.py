"""ALG on HunyuanVideo-I2V (token_replace and latent_concat) and HunyuanVideo 1.5 I2V.

HunyuanVideo-I2V calls its transformer once per step with embedded guidance, or twice with true CFG (no cache
context: the positive call, then the negative one); HunyuanVideo 1.5 calls it once per guider batch, under the
contexts "pred_cond" and "pred_uncond", and lets its ClassifierFreeGuidance guider combine the predictions.
"""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.guiders import AdaptiveProjectedGuidance, ClassifierFreeGuidance, ClassifierFreeZeroStarGuidance
from diffusers.hooks import HookRegistry

import alg_guidance as alg
from alg_guidance.errors import ALGError
from alg_guidance.integrations.diffusers.hook import HOOK_NAME
from tests.support import tiny_hunyuan
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording
from tests.support.tiny_hunyuan import FAMILIES, GUIDER_CFG, LATENT_CHANNELS, TRUE_CFG

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is not.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})

EMBEDDED = ["hunyuanvideo", "hunyuanvideo-33ch"]
WITH_CFG = ["hunyuanvideo-true-cfg", "hunyuanvideo-33ch-true-cfg", "hunyuanvideo1.5"]


def first_frame(hidden, low_pass):
    """token_replace: latent frame 0 holds the image latent."""
    return torch.cat([low_pass(hidden[:, :, :1]), hidden[:, :, 1:]], dim=2)


def image_channels(hidden, low_pass):
    """latent_concat and HunyuanVideo 1.5: [4 latent, 4 image-latent, 1 mask] channels; the image latent is filtered."""
    c = LATENT_CHANNELS
    return torch.cat([hidden[:, :c], low_pass(hidden[:, c : 2 * c]), hidden[:, 2 * c :]], dim=1)


def condition_of(family):
    return first_frame if FAMILIES[family].adapter == "hunyuanvideo" else image_channels


def stepped(family, prediction):
    """The part of the prediction the pipeline hands its scheduler: token_replace steps frames 1: only."""
    return prediction[:, :, 1:] if FAMILIES[family].adapter == "hunyuanvideo" else prediction


def cfg_scale(family):
    return GUIDER_CFG if family == "hunyuanvideo1.5" else TRUE_CFG


def alg_formula(scale):
    """The paper's rule: D(I, ∅) + w (D(LP(I), c) - D(LP(I), ∅))."""
    return lambda u_orig, c_lp, u_lp: u_orig + scale * (c_lp - u_lp)


def expected_predictions(family, record, reference, strengths, combine, calls_per_step, low_pass=None):
    """The predictions ALG must hand the scheduler, from calls to an untouched copy of the transformer.

    `calls_per_step[i]` is 1 (a positive call only: `D(LP(I), c)`) or 2 (positive then negative: `combine`).
    `low_pass(condition, strength)` builds the filtered condition; the paper's latent down-up by default.
    """
    low_pass = low_pass or (lambda condition, strength: down_up(condition, FACTOR, strength))
    put_condition = condition_of(family)
    expected, first = [], 0
    for strength, count in zip(strengths, calls_per_step, strict=True):
        cond, *uncond = record.calls[first : first + count]
        first += count
        low_passed = put_condition(cond["hidden_states"], lambda c, s=strength: low_pass(c, s) if s else c)
        c_lp = reference(**model_inputs(cond, hidden_states=low_passed))[0]
        if not uncond:
            expected.append(stepped(family, c_lp))
            continue
        u_orig = reference(**model_inputs(uncond[0]))[0]
        u_lp = reference(**model_inputs(uncond[0], hidden_states=low_passed))[0]
        expected.append(stepped(family, combine(u_orig, c_lp, u_lp)))
    assert first == len(record.calls)
    return expected


def evaluations(calls_per_step, strengths):
    """The batch of every evaluation with batched branches: a filtered negative call evaluates two branches."""
    batches = []
    for count, strength in zip(calls_per_step, strengths, strict=True):
        batches += [1] if count == 1 else [1, 2 if strength else 1]
    return batches


def assert_predictions(record, expected):
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


def guided_run(family, config, pipe=None):
    """Build (unless given) and run the family's pipeline under ALG; returns the pipeline, handle and recording."""
    pipe = pipe or FAMILIES[family].make()
    with alg.enable(pipe, config) as handle, recording(pipe) as record:
        FAMILIES[family].run(pipe)
    return pipe, handle, record


@pytest.mark.parametrize("family", WITH_CFG)
@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_follows_the_alg_formula_with_cfg(family, batch_branches):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    _, handle, record = guided_run(family, CONFIG.merge({"batch_branches": batch_branches}), pipe)
    assert handle.adapter.name == FAMILIES[family].adapter
    expected = expected_predictions(family, record, reference, STRENGTHS, alg_formula(cfg_scale(family)), [2] * 4)
    assert_predictions(record, expected)


@pytest.mark.parametrize("family", EMBEDDED)
def test_embedded_guidance_low_passes_the_one_evaluation_of_each_filtered_step(family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    _, handle, record = guided_run(family, CONFIG, pipe)
    assert handle.adapter.name == family
    assert record.evaluations == [1, 1, 1, 1]
    assert_predictions(record, expected_predictions(family, record, reference, STRENGTHS, None, [1] * 4))


@pytest.mark.parametrize("family", WITH_CFG)
@pytest.mark.parametrize(("batch_branches", "filtered_step"), [(True, [1, 2]), (False, [1, 1, 1])])
def test_evaluations_per_step_with_cfg(family, batch_branches, filtered_step):
    _, _, record = guided_run(family, CONFIG.merge({"batch_branches": batch_branches}))
    assert record.evaluations == filtered_step * 3 + [1, 1]  # three evaluations per filtered step, then plain CFG


@pytest.mark.parametrize("family", WITH_CFG)
def test_replace_mode_low_passes_both_cfg_branches(family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    _, _, record = guided_run(family, CONFIG.merge({"mode": "replace"}), pipe)
    assert record.evaluations == [1, 1] * 4

    def both_low_passed(u_orig, c_lp, u_lp):
        return u_lp + cfg_scale(family) * (c_lp - u_lp)

    assert_predictions(record, expected_predictions(family, record, reference, STRENGTHS, both_low_passed, [2] * 4))


@pytest.mark.parametrize("family", ["hunyuanvideo", "hunyuanvideo-true-cfg"])
def test_the_default_preset_is_the_tuned_one_pass_setting(family):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe) as handle, recording(pipe) as record:
        FAMILIES[family].run(pipe)
    preset = alg.get_preset("hunyuanvideo")
    assert handle.config == preset.config and handle.config.mode == "replace"
    calls = len(record.calls) // 4
    assert record.evaluations == [1] * 4 * calls  # one evaluation per call, filtered or not

    def low_pass(condition, strength):
        return down_up(condition, preset.config.filter.factor, strength)

    def both_low_passed(u_orig, c_lp, u_lp):
        return u_lp + TRUE_CFG * (c_lp - u_lp)

    strengths = [1.0, 0.0, 0.0, 0.0]  # progress <= 0.04: the first step only
    expected = expected_predictions(family, record, reference, strengths, both_low_passed, [calls] * 4, low_pass)
    assert_predictions(record, expected)


def test_the_33ch_checkpoint_and_hunyuanvideo_1_5_default_to_the_paper_preset():
    for family in ["hunyuanvideo-33ch", "hunyuanvideo1.5"]:
        with alg.enable(FAMILIES[family].make()) as handle:
            assert handle.config == alg.get_preset("paper").config


def rescaled(prediction, cond, phi):
    """Guidance rescale (Lin et al. 2023): match the prediction's std to the conditional one's, blended by phi."""
    dims = list(range(1, prediction.ndim))
    matched = prediction * cond.std(dim=dims, keepdim=True) / prediction.std(dim=dims, keepdim=True)
    return phi * matched + (1 - phi) * prediction


@pytest.mark.parametrize(
    ("guider", "calls_per_step", "combine"),
    [
        pytest.param(  # pred_cond + w (pred_cond - pred_uncond) is the Imagen rule at w + 1
            ClassifierFreeGuidance(GUIDER_CFG, use_original_formulation=True),
            [2] * 4,
            alg_formula(GUIDER_CFG + 1),
            id="original-formulation",
        ),
        pytest.param(  # CFG for the first half of the steps only: then the positive call alone
            ClassifierFreeGuidance(GUIDER_CFG, stop=0.5), [2, 2, 1, 1], alg_formula(GUIDER_CFG), id="cfg-window"
        ),
        pytest.param(  # the rescaling's conditional prediction is the corrected c_lp + u_orig - u_lp
            ClassifierFreeGuidance(GUIDER_CFG, guidance_rescale=0.7),
            [2] * 4,
            lambda u_orig, c_lp, u_lp: rescaled(alg_formula(GUIDER_CFG)(u_orig, c_lp, u_lp), c_lp + u_orig - u_lp, 0.7),
            id="guidance-rescale",
        ),
        pytest.param(ClassifierFreeGuidance(1.0), [1] * 4, None, id="no-cfg"),
    ],
)
def test_hunyuanvideo_1_5_follows_the_rule_through_its_guider(guider, calls_per_step, combine):
    pipe = tiny_hunyuan.hunyuan15_i2v(guider)
    reference = copy.deepcopy(pipe.transformer)
    _, _, record = guided_run("hunyuanvideo1.5", CONFIG, pipe)
    assert record.evaluations == evaluations(calls_per_step, STRENGTHS)
    expected = expected_predictions("hunyuanvideo1.5", record, reference, STRENGTHS, combine, calls_per_step)
    assert_predictions(record, expected)


@pytest.mark.parametrize("guider", [AdaptiveProjectedGuidance(), ClassifierFreeZeroStarGuidance()])
def test_hunyuanvideo_1_5_refuses_a_guider_the_rule_is_not_exact_for(guider):
    pipe = tiny_hunyuan.hunyuan15_i2v(guider)
    with pytest.raises(ALGError, match=f"the pipeline's guider is {type(guider).__name__}, not ClassifierFreeGuidance"):
        alg.enable(pipe, CONFIG)
    assert HOOK_NAME not in HookRegistry.check_if_exists_or_initialize(pipe.transformer).hooks


def test_hunyuanvideo_1_5_refuses_a_guider_swapped_in_after_enable_before_any_evaluation():
    pipe = tiny_hunyuan.hunyuan15_i2v()
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        pipe.guider = AdaptiveProjectedGuidance()
        with pytest.raises(
            ALGError, match="the pipeline's guider is AdaptiveProjectedGuidance, not ClassifierFreeGuidance"
        ):
            FAMILIES["hunyuanvideo1.5"].run(pipe)
    assert record.evaluations == []


def vae_mode(vae, pixels, scaling_factor):
    """The deterministic latent of preprocessed pixels: the VAE posterior's mode, scaled."""
    return vae.encode(pixels.unsqueeze(2)).latent_dist.mode() * scaling_factor


@pytest.mark.parametrize(
    ("family", "size"), [("hunyuanvideo", 64), ("hunyuanvideo-33ch-true-cfg", 64), ("hunyuanvideo1.5", 32)]
)
def test_pixel_space_encodes_the_low_passed_image_once_per_strength(family, size):
    pipe = FAMILIES[family].make()
    reference = copy.deepcopy(pipe.transformer)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    config = CONFIG.merge({"space": "pixel", "schedule": {"kind": "linear", "end": 0.5}})
    _, _, record = guided_run(family, config, pipe)
    strengths = [1.0, 1 / 3, 0.0, 0.0]  # linear ramp to 0 at progress 0.5: two distinct non-zero strengths
    assert len(encoded) == 1 + 2  # the pipeline's own encode, then one per distinct strength
    del pipe.vae.encode

    # Independently: the preprocessed image, low-passed, through the VAE's mode and the pipeline's scaling.
    pixels = pipe.video_processor.preprocess(tiny_hunyuan.image(0, size), height=size, width=size)
    scaling = pipe.vae.config.scaling_factor

    def pixel_condition(condition, strength):
        latent = vae_mode(pipe.vae, down_up(pixels, FACTOR, strength), scaling)
        return torch.cat([latent.expand_as(condition[:, :, :1]), condition[:, :, 1:]], dim=2)

    combine = alg_formula(cfg_scale(family))
    calls = 2 if family in WITH_CFG else 1
    expected = expected_predictions(family, record, reference, strengths, combine, [calls] * 4, pixel_condition)
    assert_predictions(record, expected)
