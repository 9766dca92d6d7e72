"""ALG as a guided k-diffusion denoiser, run by k-diffusion's own samplers on a model whose conditions interact."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import alg_guidance as alg
from alg_guidance.errors import ALGError
from alg_guidance.integrations.k_diffusion import guide
from tests.support import tiny_kdiffusion
from tests.support.filters import down_up
from tests.support.recording import assert_prediction
from tests.support.tiny_kdiffusion import Recorder, TinyDenoiser, conditions

# torchsde warns when k-diffusion asks its Brownian tree for float32 sigmas a rounding error outside its interval.
pytestmark = pytest.mark.filterwarnings("ignore:Should have t:UserWarning")

FACTOR = 0.4
CFG = 5.0
STEPS = 6
# A ramp from 1 at progress 0 to 0 at progress 0.5: every sampler evaluates at strengths in (0, 1], then at 0.
RAMP = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "linear", "end": 0.5})
WINDOW = RAMP.merge({"schedule": {"kind": "step", "end": 0.4}})  # steps 0-2 of 6 at full strength
OFF = RAMP.merge({"schedule": {"kind": "constant", "value": 0.0}})

# Calls of the guided denoiser per sampler, for STEPS steps (dpm_fast: STEPS evaluations; dpm_adaptive varies).
GUIDED_CALLS = {
    "euler": STEPS,
    "euler_ancestral": STEPS,
    "heun": 2 * STEPS - 1,  # a second evaluation at sigmas[i + 1], except on the last step (to sigma 0)
    "dpm_2": 2 * STEPS - 1,  # a second evaluation at the log-midpoint, except on the last step
    "dpm_2_ancestral": 2 * STEPS - 1,
    "lms": STEPS,
    "dpm_fast": STEPS,
    "dpm_adaptive": None,
    "dpmpp_2s_ancestral": 2 * STEPS - 1,
    "dpmpp_sde": 2 * STEPS - 1,
    "dpmpp_2m": STEPS,
    "dpmpp_2m_sde": STEPS,
    "dpmpp_3m_sde": STEPS,
}


def schedule(sampling):
    return sampling.get_sigmas_karras(STEPS, 0.05, 20.0)


def sample(sampling, name, model, x, sigmas):
    """Run the sampler `name` over `sigmas` (dpm_fast and dpm_adaptive over the same sigma range)."""
    torch.manual_seed(0)
    function = getattr(sampling, f"sample_{name}")
    if name == "dpm_fast":
        return function(model, x, sigmas[-2].item(), sigmas[0].item(), STEPS, disable=True)
    if name == "dpm_adaptive":
        return function(model, x, sigmas[-2].item(), sigmas[0].item(), rtol=0.2, atol=0.05, disable=True)
    return function(model, x, sigmas, disable=True)


def expected_strength(sigma: float, sigmas: torch.Tensor) -> float:
    """The ramp's strength at `sigma`: step position interpolated in log-sigma, progress = position / (N - 1)."""
    steps = sigmas[:-1].double().numpy()
    position = np.interp(-math.log(sigma), -np.log(steps), np.arange(len(steps)))
    progress = position / (len(steps) - 1)
    return max(0.0, 1.0 - progress / 0.5)


def make_guided(config, cfg_scale=CFG, **options):
    image, text, negative = conditions()
    recorder = Recorder(TinyDenoiser())
    uncond = {"text": negative} if cfg_scale is not None else None
    guided = guide(
        recorder,
        config,
        image_cond={"image": image},
        cond={"text": text},
        uncond=uncond,
        cfg_scale=1.0 if cfg_scale is None else cfg_scale,
        **options,
    )
    return guided, recorder, image, text, negative


@pytest.mark.parametrize("name", GUIDED_CALLS)
def test_every_sampler_sees_the_alg_branches_at_the_schedules_strength_for_each_sigma(sampling, name):
    sigmas = schedule(sampling)
    guided, recorder, image, text, negative = make_guided(RAMP, sigmas=sigmas)
    x = torch.randn(image.shape, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    result = sample(sampling, name, guided, x, sigmas)

    assert result.shape == x.shape and torch.isfinite(result).all()
    if GUIDED_CALLS[name] is not None:
        assert len(recorder.calls) == GUIDED_CALLS[name]
    strengths = []
    for call in recorder.calls:
        sigma = call.sigma[0].item()
        assert torch.all(call.sigma == sigma)
        strength = expected_strength(sigma, sigmas)
        strengths.append(strength)
        images, texts = call.inputs["image"], call.inputs["text"]
        if strength > 0:  # [u_orig, c_lp, u_lp]
            low_passed = down_up(image, FACTOR, strength)
            assert call.batch == 3
            assert torch.equal(images[0], image[0])
            assert_prediction(images[1:], torch.cat([low_passed, low_passed]))
            assert torch.equal(texts, torch.cat([negative, text, negative]))
        else:  # plain CFG: [u, c]
            assert call.batch == 2
            assert torch.equal(images, torch.cat([image, image]))
            assert torch.equal(texts, torch.cat([negative, text]))
    assert max(strengths) == 1.0 and min(strengths) == 0.0  # both the ALG and the plain CFG rule ran


def test_sample_euler_with_alg_equals_a_hand_written_alg_euler_loop(sampling):
    sigmas = schedule(sampling)
    guided, _, image, text, negative = make_guided(WINDOW, sigmas=sigmas)
    reference = copy.deepcopy(guided.inner_model.denoiser)
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
    got = sampling.sample_euler(guided, noise * sigmas[0], sigmas, disable=True)

    x = noise * sigmas[0]
    for i in range(STEPS):
        sigma = sigmas[i].reshape(1)
        strength = 1.0 if i / (STEPS - 1) <= 0.4 else 0.0
        low_passed = down_up(image, FACTOR, strength)
        u_orig = reference(x, sigma, image=image, text=negative)
        u_lp = reference(x, sigma, image=low_passed, text=negative)
        c_lp = reference(x, sigma, image=low_passed, text=text)
        denoised = u_orig + CFG * (c_lp - u_lp)
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    assert_prediction(got, x, rtol=1e-6)


def test_under_heun_the_second_evaluation_takes_the_strength_of_its_own_sigma(sampling):
    """Heun evaluates step i at sigmas[i] and again at sigmas[i + 1]: the second call gets step i + 1's strength."""
    sigmas = schedule(sampling)
    guided, recorder, *_ = make_guided(WINDOW, sigmas=sigmas)
    sampling.sample_heun(guided, torch.randn(tiny_kdiffusion.SHAPE) * sigmas[0], sigmas, disable=True)
    called_at = [sigmas.tolist().index(call.sigma[0].item()) for call in recorder.calls]
    assert called_at == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # progress 0, 0.2, 0.4 are filtered (three branches), 0.6 onwards is plain CFG (two)
    assert [call.batch for call in recorder.calls] == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2]


def test_an_interaction_between_image_and_text_makes_alg_differ_from_cfg_on_a_low_passed_image(sampling):
    sigmas = schedule(sampling)
    guided, _, image, text, negative = make_guided(WINDOW, sigmas=sigmas)
    x = torch.randn(image.shape) * sigmas[0]
    sigma = sigmas[:1]
    model = guided.inner_model.denoiser
    low_passed = down_up(image, FACTOR, 1.0)
    cfg_low_passed = model(x, sigma, image=low_passed, text=negative) + CFG * (
        model(x, sigma, image=low_passed, text=text) - model(x, sigma, image=low_passed, text=negative)
    )
    u_orig = model(x, sigma, image=image, text=negative)
    alg_prediction = guided(x, sigma)
    assert_prediction(alg_prediction, u_orig + (cfg_low_passed - model(x, sigma, image=low_passed, text=negative)))
    assert not torch.allclose(alg_prediction, cfg_low_passed, rtol=1e-3)


def test_branches_in_one_batch_or_one_call_each_give_the_same_samples(sampling):
    sigmas = schedule(sampling)
    batched, batched_record, image, *_ = make_guided(WINDOW, sigmas=sigmas)
    separate, separate_record, *_ = make_guided(WINDOW.merge({"batch_branches": False}), sigmas=sigmas)
    x = torch.randn(image.shape) * sigmas[0]
    got = sampling.sample_dpmpp_2m(separate, x, sigmas, disable=True)
    assert_prediction(got, sampling.sample_dpmpp_2m(batched, x, sigmas, disable=True))
    assert [call.batch for call in batched_record.calls] == [3, 3, 3, 2, 2, 2]
    # [uncond, cond] as one call, as plain CFG; the extra branch u_lp on its own while filtering
    assert [call.batch for call in separate_record.calls] == [2, 1] * 3 + [2] * 3


def test_with_the_schedule_at_zero_it_is_plain_cfg_exactly(sampling):
    sigmas = schedule(sampling)
    guided, _, image, text, negative = make_guided(OFF, sigmas=sigmas)
    model = copy.deepcopy(guided.inner_model.denoiser)

    def plain_cfg(x, sigma):
        u, c = model(torch.cat([x, x]), torch.cat([sigma, sigma]), image=torch.cat([image, image]),
                     text=torch.cat([negative, text])).chunk(2)  # fmt: skip
        return u + CFG * (c - u)

    x = torch.randn(image.shape) * sigmas[0]
    assert torch.equal(
        sampling.sample_dpmpp_2m(guided, x, sigmas, disable=True),
        sampling.sample_dpmpp_2m(plain_cfg, x, sigmas, disable=True),
    )


def test_without_cfg_replace_mode_is_one_call_with_the_low_passed_image(sampling):
    sigmas = schedule(sampling)
    guided, recorder, image, text, _ = make_guided(WINDOW, cfg_scale=None, sigmas=sigmas)
    assert guided.mode == "replace" and not guided.uses_cfg
    x = torch.randn(image.shape) * sigmas[0]
    sampling.sample_euler(guided, x, sigmas, disable=True)
    assert [call.batch for call in recorder.calls] == [1] * STEPS
    for step, call in enumerate(recorder.calls):
        strength = 1.0 if step / (STEPS - 1) <= 0.4 else 0.0
        assert_prediction(call.inputs["image"], down_up(image, FACTOR, strength))
        assert torch.equal(call.inputs["text"], text)


def test_replace_mode_with_cfg_low_passes_both_branches(sampling):
    sigmas = schedule(sampling)
    guided, recorder, image, text, negative = make_guided(WINDOW.merge({"mode": "replace"}), sigmas=sigmas)
    x = torch.randn(image.shape) * sigmas[0]
    model = copy.deepcopy(guided.inner_model.denoiser)
    got = guided(x, sigmas[:1])
    low_passed = down_up(image, FACTOR, 1.0)
    u_lp = model(x, sigmas[:1], image=low_passed, text=negative)
    c_lp = model(x, sigmas[:1], image=low_passed, text=text)
    assert_prediction(got, u_lp + CFG * (c_lp - u_lp))
    assert recorder.calls[0].batch == 2


def test_the_adaptive_schedule_follows_the_noise_level_sigma_over_one_plus_sigma(sampling):
    sigmas = schedule(sampling)
    config = RAMP.merge({"schedule": {"kind": "adaptive", "threshold": 0.8}})
    guided, recorder, image, *_ = make_guided(config, sigmas=sigmas)
    sampling.sample_euler(guided, torch.randn(image.shape) * sigmas[0], sigmas, disable=True)
    filtered = [sigma / (1 + sigma) >= 0.8 for sigma in sigmas[:-1].tolist()]
    assert [call.batch == 3 for call in recorder.calls] == filtered
    assert True in filtered and False in filtered


def test_sigmas_can_be_set_after_guide_and_are_required_before_sampling(sampling):
    guided, *_ = make_guided(WINDOW)
    sigmas = schedule(sampling)
    with pytest.raises(ALGError, match="sigma schedule"):
        guided(torch.zeros(tiny_kdiffusion.SHAPE), sigmas[:1])
    guided.sigmas = sigmas
    assert guided.strength(sigmas[:1]) == 1.0 and guided.strength(sigmas[5:6]) == 0.0


def test_per_frame_cfg_scales_broadcast(sampling):
    sigmas = schedule(sampling)
    scales = torch.tensor([2.0, 7.0]).reshape(1, 1, 2, 1, 1)
    guided, _, image, text, negative = make_guided(WINDOW, cfg_scale=scales, sigmas=sigmas)
    x = torch.randn(image.shape) * sigmas[0]
    model = copy.deepcopy(guided.inner_model.denoiser)
    low_passed = down_up(image, FACTOR, 1.0)
    u_orig = model(x, sigmas[:1], image=image, text=negative)
    u_lp = model(x, sigmas[:1], image=low_passed, text=negative)
    c_lp = model(x, sigmas[:1], image=low_passed, text=text)
    assert_prediction(guided(x, sigmas[:1]), u_orig + scales * (c_lp - u_lp))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"uncond": None}, "needs the unconditional inputs"),
        ({"cond": {"image": torch.zeros(1)}}, "both give image"),
        ({"uncond": {"other": torch.zeros(1)}}, "same inputs"),
        ({"layout": "missing"}, "finds no image condition"),
        ({"image_cond": {"a": torch.zeros(1, 2, 2), "b": torch.zeros(1, 2, 2)}}, "name the image condition"),
        ({"config": RAMP.merge({"space": "pixel"})}, "space='pixel'"),
        ({"config": RAMP.merge({"mode": "alg"}), "cfg_scale": 1.0, "uncond": None}, "use mode 'auto' or 'replace'"),
        ({"sigmas": [1.0, 2.0, 0.0]}, "decrease strictly"),
        ({"sigmas": [1.0]}, "at least two"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(change, message):
    image, text, negative = conditions()
    arguments = {
        "config": RAMP,
        "image_cond": {"image": image},
        "cond": {"text": text},
        "uncond": {"text": negative},
        "cfg_scale": CFG,
        **change,
    }
    with pytest.raises(ALGError, match=message):
        guide(TinyDenoiser(), arguments.pop("config"), **arguments)


def test_a_batch_with_different_sigmas_is_refused(sampling):
    guided, *_ = make_guided(WINDOW, sigmas=schedule(sampling))
    with pytest.raises(ALGError, match="share one sigma"):
        guided(torch.zeros(2, *tiny_kdiffusion.SHAPE[1:]), torch.tensor([1.0, 2.0]))


def test_cond_uncond_and_scale_given_through_extra_args_sample_as_when_bound(sampling):
    """k-diffusion's CFGDenoiser convention: the sampler's extra_args carry cond, uncond and cond_scale."""
    sigmas = schedule(sampling)
    bound, _, image, text, negative = make_guided(WINDOW, sigmas=sigmas)
    at_call = guide(Recorder(TinyDenoiser()), WINDOW, image_cond={"image": image}, sigmas=sigmas)
    assert isinstance(at_call, torch.nn.Module) and isinstance(at_call.inner_model, Recorder)
    x = torch.randn(image.shape) * sigmas[0]
    extra_args = {"cond": {"text": text}, "uncond": {"text": negative}, "cond_scale": CFG}
    got = sampling.sample_dpmpp_2m(at_call, x, sigmas, extra_args=extra_args, disable=True)
    assert torch.equal(got, sampling.sample_dpmpp_2m(bound, x, sigmas, disable=True))
    with pytest.raises(ALGError, match="extra_args give cond, which guide\\(\\) already bound"):
        bound(x, sigmas[:1], cond={"text": text})
