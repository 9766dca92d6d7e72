"""k-diffusion sampling of tiny diffusers pipelines through `from_pipeline`, with and without ALG."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers import CogVideoXDDIMScheduler

import alg_guidance as alg
from alg_guidance.errors import ALGError
from alg_guidance.integrations.k_diffusion import from_pipeline
from tests.support import tiny_cogvideox, tiny_wan
from tests.support.filters import down_up
from tests.support.recording import assert_prediction, recording

FACTOR = 0.4
# 4 steps, progress 0, 1/3, 2/3, 1: the first three are filtered.
CONFIG = alg.ALGConfig(filter={"kind": "downsample", "factor": FACTOR}, schedule={"kind": "step", "end": 0.7})
OFF = CONFIG.merge({"schedule": {"kind": "constant", "value": 0.0}})


def wan_call(**overrides):
    """A 4-step, 5-frame, 32 x 32 Wan 2.1 run (2 latent frames of 4 x 4)."""
    return tiny_wan.call_kwargs(**{"height": 32, "width": 32, "num_frames": 5, **overrides})


@pytest.fixture(scope="module")
def wan():
    pipe = tiny_wan.wan21()
    reference = copy.deepcopy(pipe.transformer)
    with recording(pipe) as record:
        pipe(**wan_call())
    return pipe, reference, record, from_pipeline(pipe, **wan_call())


def cfg_by_hand(setup):
    """Plain CFG on the helper's denoiser, branches [uncond, cond] in one batch, written out."""
    image_cond, cond, uncond = setup.image_cond, setup.cond, setup.uncond

    def denoiser(x, sigma):
        inputs = {name: torch.cat([value, value]) for name, value in image_cond.items()}
        inputs.update({name: torch.cat([uncond[name], cond[name]]) for name in cond})
        u, c = setup.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **inputs).chunk(2)
        return u + setup.cfg_scale * (c - u)

    return denoiser


def test_wan_conditioning_is_what_the_pipeline_hands_its_transformer(wan):
    pipe, _, record, setup = wan
    cond, uncond = record.calls[0], record.calls[1]
    assert setup.adapter.name == "wan2.1" and setup.cfg_scale == 5.0
    assert torch.equal(setup.image_cond["condition"], cond["hidden_states"][:, 16:])
    assert torch.equal(setup.image_cond["encoder_hidden_states_image"], cond["encoder_hidden_states_image"])
    assert torch.equal(setup.cond["encoder_hidden_states"], cond["encoder_hidden_states"])
    assert torch.equal(setup.uncond["encoder_hidden_states"], uncond["encoder_hidden_states"])
    assert torch.equal(setup.noise, cond["hidden_states"][:, :16])
    times = pipe.scheduler.sigmas.double().clamp(max=0.999)
    torch.testing.assert_close(setup.sigmas, (times / (1 - times)).float())
    assert "forward" not in vars(pipe.transformer) and "step" not in vars(pipe.scheduler)


def test_wan_with_alg_each_call_follows_the_formula_with_the_untouched_transformer(wan):
    _, reference, record, setup = wan
    guided = setup.guide(CONFIG)
    sigma = setup.sigmas[1:2]
    x = torch.randn(setup.noise.shape, generator=torch.Generator().manual_seed(5)) * sigma
    got = guided(x, sigma)

    cond, uncond = record.calls[0], record.calls[1]
    t, x_t = sigma / (1 + sigma), x / (1 + sigma)

    def denoised(call, condition):
        hidden = torch.cat([x_t, condition], dim=1)
        velocity = reference(
            hidden_states=hidden,
            timestep=t * 1000,
            encoder_hidden_states=call["encoder_hidden_states"],
            encoder_hidden_states_image=call["encoder_hidden_states_image"],
            return_dict=False,
        )[0]
        return x_t - t * velocity

    condition = cond["hidden_states"][:, 16:]
    low_passed = down_up(condition, FACTOR, 1.0)
    expected = denoised(uncond, condition) + 5.0 * (denoised(cond, low_passed) - denoised(uncond, low_passed))
    assert_prediction(got, expected)


def test_wan_sampled_through_the_helper_with_alg_off_is_exactly_plain_cfg_sampling(wan, sampling):
    *_, setup = wan
    x = setup.noise * setup.sigmas[0]
    plain = sampling.sample_euler(cfg_by_hand(setup), x, setup.sigmas, disable=True)
    assert torch.equal(sampling.sample_euler(setup.guide(OFF), x, setup.sigmas, disable=True), plain)
    assert not torch.allclose(sampling.sample_euler(setup.guide(CONFIG), x, setup.sigmas, disable=True), plain)


def test_wan_decoding_gives_the_pipelines_own_frames():
    pipe = tiny_wan.wan21()
    finals = []
    step = pipe.scheduler.step

    def keep_last(*args, **kwargs):
        finals.append(step(*args, **kwargs)[0])
        return (finals[-1],)

    pipe.scheduler.step = keep_last
    frames = pipe(**wan_call(output_type="np")).frames
    del pipe.scheduler.step
    setup = from_pipeline(pipe, **wan_call())
    decoded = setup.decode(finals[-1])
    assert decoded.shape == (1, 5, 32, 32, 3)
    assert np.array_equal(decoded, frames)


def test_wan_without_cfg_has_no_unconditional_branch():
    setup = from_pipeline(tiny_wan.wan21(), **wan_call(guidance_scale=1.0))
    assert setup.uncond is None and setup.cfg_scale == 1.0
    guided = setup.guide(CONFIG)
    assert guided.mode == "replace" and not guided.uses_cfg


def cogvideox(zero_terminal_snr=True):
    pipe = tiny_cogvideox.cogvideox()
    if not zero_terminal_snr:
        config = {**tiny_cogvideox.SCHEDULER_CONFIG, "rescale_betas_zero_snr": False}
        pipe.scheduler = CogVideoXDDIMScheduler(**config)
    return pipe


def test_cogvideox_conditioning_is_the_pipelines_batched_call_split_in_two():
    pipe = cogvideox()
    with recording(pipe) as record:
        pipe(**tiny_cogvideox.call_kwargs())
    setup = from_pipeline(pipe, **tiny_cogvideox.call_kwargs())
    (call,) = record.calls[:1]
    channels = tiny_cogvideox.LATENT_CHANNELS
    assert setup.adapter.name == "cogvideox" and setup.cfg_scale == tiny_cogvideox.GUIDANCE
    assert torch.equal(setup.image_cond["condition"], call["hidden_states"][1:, :, channels:])
    assert torch.equal(setup.uncond["encoder_hidden_states"], call["encoder_hidden_states"][:1])
    assert torch.equal(setup.cond["encoder_hidden_states"], call["encoder_hidden_states"][1:])
    assert setup.denoiser.model.fixed["image_rotary_emb"] is not None
    assert isinstance(setup.denoiser, alg.k_diffusion.DiscreteVDenoiser)
    assert setup.sigmas[0].item() == pytest.approx(4096.0, rel=1e-5)  # zero terminal SNR, capped


def test_cogvideox_plain_cfg_under_sample_euler_is_the_pipelines_own_ddim_run(sampling):
    """Deterministic DDIM is the Euler method in k-diffusion's variables: the two runs agree."""
    pipe = cogvideox(zero_terminal_snr=False)
    expected = pipe(**tiny_cogvideox.call_kwargs()).frames
    setup = from_pipeline(pipe, **tiny_cogvideox.call_kwargs())
    x = setup.noise * (1 + setup.sigmas[0] ** 2).sqrt()  # the pipeline's pure-noise sample, in k-diffusion's x
    got = sampling.sample_euler(setup.guide(OFF), x, setup.sigmas, disable=True)
    assert_prediction(got, expected)


@pytest.mark.parametrize("make", [tiny_cogvideox.cogvideox, tiny_cogvideox.cogvideox15])
def test_cogvideox_decoding_gives_the_pipelines_own_frames(sampling, make):
    pipe = make()
    latents = pipe(**tiny_cogvideox.call_kwargs()).frames
    frames = pipe(**tiny_cogvideox.call_kwargs(output_type="np")).frames
    setup = from_pipeline(pipe, **tiny_cogvideox.call_kwargs())
    assert setup.noise.shape == latents.shape  # CogVideoX 1.5 pads the latent frames; decoding drops the padding
    assert np.array_equal(setup.decode(latents), frames)
    guided = sampling.sample_dpmpp_2m(setup.guide(), setup.noise * setup.sigmas[0], setup.sigmas, disable=True)
    assert setup.decode(guided).shape == frames.shape


def test_a_dynamic_cfg_scale_is_refused():
    with pytest.raises(ALGError, match="use_dynamic_cfg"):
        from_pipeline(tiny_cogvideox.cogvideox(), **tiny_cogvideox.call_kwargs(use_dynamic_cfg=True))
