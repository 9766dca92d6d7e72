"""ALG on the Wan family (Wan 2.1, Wan 2.2 A14B, Wan 2.2 TI2V-5B, SkyReels-V2): sequential CFG."""

from __future__ import annotations

import copy

import pytest
import torch

import alg_guidance as alg
from alg_guidance.errors import ALGError
from tests.support import tiny_wan
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, model_inputs, recording

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered at full strength, the last is plain CFG.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
STRENGTHS = [1.0, 1.0, 1.0, 0.0]
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})


def concatenated(hidden: torch.Tensor, low_pass) -> torch.Tensor:
    """Wan 2.1/2.2 A14B/SkyReels: channels 16: are the 4 mask + 16 image-latent channels."""
    return torch.cat([hidden[:, :16], low_pass(hidden[:, 16:])], dim=1)


def first_frame(hidden: torch.Tensor, low_pass) -> torch.Tensor:
    """Wan 2.2 TI2V-5B: latent frame 0 holds the image latent."""
    return torch.cat([low_pass(hidden[:, :, :1]), hidden[:, :, 1:]], dim=2)


FAMILIES = {
    "wan2.1": (tiny_wan.wan21, concatenated, ("transformer",)),
    "wan2.2": (tiny_wan.wan22, concatenated, ("transformer", "transformer_2")),
    "wan2.2-ti2v": (tiny_wan.wan22_ti2v, first_frame, ("transformer",)),
    "skyreels-v2": (tiny_wan.skyreels_v2, concatenated, ("transformer",)),
}
SCALES = {"transformer": 5.0, "transformer_2": 3.0}


def run(pipe, **overrides):
    if pipe.config.get("boundary_ratio") is not None:
        overrides.setdefault("guidance_scale_2", SCALES["transformer_2"])
    return pipe(**tiny_wan.call_kwargs(**overrides)).frames


def expected_predictions(record, references, low_pass_condition, strengths, cfg=True):
    """ALG computed by calling untouched copies of the denoisers: D(I, ∅) + w (D(LP(I), c) - D(LP(I), ∅))."""
    calls_per_step = 2 if cfg else 1
    expected = []
    for step, strength in enumerate(strengths):
        cond, *uncond = record.calls[calls_per_step * step : calls_per_step * (step + 1)]
        model = references[cond["denoiser"]]
        hidden = cond["hidden_states"]
        low_passed = low_pass_condition(hidden, lambda c, s=strength: down_up(c, FACTOR, s))
        c_lp = model(**model_inputs(cond, hidden_states=low_passed))[0]
        if not cfg:
            expected.append(c_lp)
            continue
        u_orig = model(**model_inputs(uncond[0]))[0]
        u_lp = model(**model_inputs(uncond[0], hidden_states=low_passed))[0]
        expected.append(u_orig + SCALES[cond["denoiser"]] * (c_lp - u_lp))
    return expected


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch_branches", [True, False])
def test_every_step_follows_the_alg_formula(family, batch_branches):
    factory, condition, denoisers = FAMILIES[family]
    pipe = factory()
    references = {name: copy.deepcopy(getattr(pipe, name)) for name in denoisers}
    with (
        alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})) as handle,
        recording(pipe, denoisers) as record,
    ):
        run(pipe)
    assert handle.adapter.name == family
    assert {call["denoiser"] for call in record.calls} == set(denoisers)
    expected = expected_predictions(record, references, condition, STRENGTHS)
    for step, (got, want) in enumerate(zip(record.predictions, expected, strict=True)):
        assert_prediction(got, want, message=f"step {step}")


@pytest.mark.parametrize(
    ("batch_branches", "active_step", "inactive_step"),
    [
        (True, [1, 2], [1, 1]),
        (False, [1, 1, 1], [1, 1]),
    ],
)
def test_evaluations_per_step(batch_branches, active_step, inactive_step):
    pipe = tiny_wan.wan21()
    with alg.enable(pipe, CONFIG.merge({"batch_branches": batch_branches})), recording(pipe) as record:
        run(pipe)
    assert record.evaluations == active_step * 3 + inactive_step
    assert sum(record.evaluations) == 3 * 3 + 2  # three evaluations per filtered step, two per plain CFG step


def test_without_cfg_auto_mode_replaces_the_condition_in_one_evaluation():
    pipe = tiny_wan.wan21()
    references = {"transformer": copy.deepcopy(pipe.transformer)}
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        run(pipe, guidance_scale=1.0)
    assert record.evaluations == [1, 1, 1, 1]
    expected = expected_predictions(record, references, concatenated, STRENGTHS, cfg=False)
    for got, want in zip(record.predictions, expected, strict=True):
        assert_prediction(got, want)


def test_replace_mode_with_cfg_low_passes_both_branches():
    pipe = tiny_wan.wan21()
    reference = copy.deepcopy(pipe.transformer)
    with alg.enable(pipe, CONFIG.merge({"mode": "replace"})), recording(pipe) as record:
        run(pipe)
    assert record.evaluations == [1, 1] * 4
    cond, uncond = record.calls[0], record.calls[1]
    low_passed = concatenated(cond["hidden_states"], lambda c: down_up(c, FACTOR, 1.0))
    c_lp = reference(**model_inputs(cond, hidden_states=low_passed))[0]
    u_lp = reference(**model_inputs(uncond, hidden_states=low_passed))[0]
    assert_prediction(record.predictions[0], u_lp + 5.0 * (c_lp - u_lp))


def test_mode_alg_without_cfg_is_refused_before_anything_runs():
    pipe = tiny_wan.wan21()
    with (
        alg.enable(pipe, CONFIG.merge({"mode": "alg"})),
        recording(pipe) as record,
        pytest.raises(ALGError, match="use mode 'auto' or 'replace'"),
    ):
        run(pipe, guidance_scale=1.0)
    assert record.evaluations == []


def test_first_last_frame_filters_both_images():
    pipe = tiny_wan.wan21(first_last_frame=True)
    references = {"transformer": copy.deepcopy(pipe.transformer)}
    with alg.enable(pipe, CONFIG), recording(pipe) as record:
        run(pipe, last_image=tiny_wan.image(seed=1))
    expected = expected_predictions(record, references, concatenated, STRENGTHS)
    for got, want in zip(record.predictions, expected, strict=True):
        assert_prediction(got, want)


@pytest.mark.parametrize("family", ["wan2.1", "wan2.2-ti2v"])
def test_pixel_space_encodes_the_low_passed_image_once_per_strength(family):
    factory, put_condition, denoisers = FAMILIES[family]
    pipe = factory()
    reference = copy.deepcopy(pipe.transformer)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(x.shape) or encode(x, *args, **kwargs)
    config = CONFIG.merge({"space": "pixel", "schedule": {"kind": "linear", "end": 0.5}})
    with alg.enable(pipe, config), recording(pipe, denoisers) as record:
        run(pipe)
    strengths = [1.0, 1 / 3, 0.0, 0.0]  # linear ramp to 0 at progress 0.5: two distinct non-zero strengths
    assert len(encoded) == 1 + 2  # the pipeline's own encode, then one per distinct strength

    # Independently: the pipeline's prepare_latents on the low-passed preprocessed image gives the condition.
    pixels = pipe.video_processor.preprocess(tiny_wan.image(0), height=64, width=64).float()

    def pixel_condition(strength):
        prepared = type(pipe).prepare_latents(
            pipe,
            down_up(pixels, FACTOR, strength),
            1,
            16,
            64,
            64,
            9,
            torch.float32,
            "cpu",
            None,
            torch.zeros(1, 16, 3, 8, 8),
        )[1]
        return prepared if family == "wan2.1" else prepared[:, :, :1]

    for step, strength in enumerate(strengths):
        cond, uncond = record.calls[2 * step : 2 * step + 2]
        hidden = cond["hidden_states"]
        low_passed = put_condition(hidden, lambda _, s=strength: pixel_condition(s)) if strength else hidden
        c_lp = reference(**model_inputs(cond, hidden_states=low_passed))[0]
        u_orig = reference(**model_inputs(uncond))[0]
        u_lp = reference(**model_inputs(uncond, hidden_states=low_passed))[0]
        expected = u_orig + 5.0 * (c_lp - u_lp)
        assert_prediction(record.predictions[step], expected, message=f"step {step}")
