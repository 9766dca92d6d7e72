"""The parameterization wrappers against the samplers of the models' own conventions."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import DDIMScheduler

from alg_guidance.errors import ALGError
from alg_guidance.integrations.k_diffusion import DiscreteEpsDenoiser, DiscreteVDenoiser, FlowMatchingDenoiser
from tests.support.recording import assert_prediction
from tests.support.tiny_kdiffusion import SHAPE, TinyNetwork, conditions

TIMES = [0.995, 0.95, 0.8, 0.55, 0.3, 0.1]


def test_the_flow_matching_wrapper_under_sample_euler_is_the_flow_matching_euler_loop(sampling):
    network = TinyNetwork()
    image, text, _ = conditions()
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))

    x_t = noise
    times = [*TIMES, 0.0]
    for t, t_next in itertools.pairwise(times):
        velocity = network(x_t, torch.tensor([t * 1000]), image=image, text=text)
        x_t = x_t + (t_next - t) * velocity

    denoiser = FlowMatchingDenoiser(network, timestep_scale=1000)
    sigmas = FlowMatchingDenoiser.sigma_of_time(torch.tensor(times, dtype=torch.float64)).float()
    x = noise * (1 + sigmas[0])  # x_t = x / (1 + sigma)
    got = sampling.sample_euler(denoiser, x, sigmas, extra_args={"image": image, "text": text}, disable=True)
    assert_prediction(got, x_t)


def ddim(prediction_type: str) -> DDIMScheduler:
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        clip_sample=False,
    )
    scheduler.set_timesteps(5)
    return scheduler


@pytest.mark.parametrize(
    ("wrapper", "prediction_type"), [(DiscreteVDenoiser, "v_prediction"), (DiscreteEpsDenoiser, "epsilon")]
)
def test_discrete_wrappers_under_sample_euler_are_deterministic_ddim(sampling, wrapper, prediction_type):
    """DDIM with eta 0 is the Euler method on x / alpha over sigma = sqrt(1 - alpha^2) / alpha."""
    network = TinyNetwork()
    image, text, _ = conditions()
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    scheduler = ddim(prediction_type)

    sample = noise
    for t in scheduler.timesteps:
        output = network(sample, t.reshape(1), image=image, text=text)
        sample = scheduler.step(output, t, sample).prev_sample

    denoiser = wrapper(network, scheduler.alphas_cumprod, quantize=True)
    sigmas = denoiser.schedule(scheduler.timesteps)
    x = noise * (1 + sigmas[0] ** 2).sqrt()  # the variance-preserving sample divided by its alpha
    got = sampling.sample_euler(denoiser, x, sigmas, extra_args={"image": image, "text": text}, disable=True)
    assert_prediction(got, sample)


def test_timesteps_and_sigmas_map_both_ways():
    denoiser = DiscreteVDenoiser(TinyNetwork(), ddim("v_prediction").alphas_cumprod)
    timesteps = torch.tensor([999.0, 640.5, 250.25, 3.0, 0.0])
    assert_prediction(denoiser.timestep(denoiser.sigma_at(timesteps)), timesteps, rtol=1e-4)
    quantized = DiscreteVDenoiser(TinyNetwork(), ddim("v_prediction").alphas_cumprod, quantize=True)
    assert quantized.timestep(denoiser.sigma_at(torch.tensor([640.4, 640.6]))).tolist() == [640.0, 641.0]
    assert denoiser.timestep(torch.tensor([1e-9, 1e9])).tolist() == [0.0, 999.0]


def test_a_zero_terminal_snr_schedule_ends_at_a_finite_sigma():
    alphas = torch.linspace(0.999, 0.0, 1000, dtype=torch.float64)
    denoiser = DiscreteVDenoiser(TinyNetwork(), alphas)
    assert denoiser.sigma_max == pytest.approx(4096.0, rel=1e-6)


def test_a_schedule_that_does_not_decrease_is_refused():
    with pytest.raises(ALGError, match="decrease strictly"):
        DiscreteEpsDenoiser(TinyNetwork(), torch.tensor([0.5, 0.9, 0.1]))
