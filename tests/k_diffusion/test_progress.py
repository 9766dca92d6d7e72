"""Progress and noise level from sigma, never from counting calls."""

from __future__ import annotations

import math

import pytest
import torch

from alg_guidance.errors import ALGError
from alg_guidance.integrations.k_diffusion import SigmaProgress
from alg_guidance.schedules import StepState


@pytest.mark.parametrize("steps", [1, 2, 7, 50])
def test_a_call_at_a_step_sigma_has_the_diffusers_step_and_progress(sampling, steps):
    sigmas = sampling.get_sigmas_karras(steps, 0.03, 80.0)
    progress = SigmaProgress(sigmas)
    for i, sigma in enumerate(sigmas[:-1].tolist()):
        assert progress.state(sigma) == StepState.from_step(i, steps, noise_level=sigma / (1 + sigma))


def test_an_intermediate_sigma_is_interpolated_in_log_sigma(sampling):
    sigmas = sampling.get_sigmas_exponential(5, 0.1, 10.0)  # evenly spaced in log-sigma
    progress = SigmaProgress(sigmas)
    midpoint = sigmas[1].log().lerp(sigmas[2].log(), 0.5).exp().item()  # dpm_2's midpoint of step 1
    assert progress.position(midpoint) == pytest.approx(1.5, abs=1e-6)
    assert progress.state(midpoint).step == 1
    assert progress.state(midpoint).progress == pytest.approx(1.5 / 4, abs=1e-6)
    quarter = math.exp(math.log(sigmas[3].item()) * 0.75 + math.log(sigmas[4].item()) * 0.25)
    assert progress.position(quarter) == pytest.approx(3.25, abs=1e-6)


def test_sigmas_outside_the_steps_are_clamped():
    progress = SigmaProgress(torch.tensor([8.0, 4.0, 2.0, 0.0]))
    assert progress.state(12.0).progress == 0.0  # euler/heun with s_churn raise sigma above the schedule's
    assert progress.state(1.0).progress == 1.0  # below the last step (an ancestral step's sigma_down)
    assert progress.state(1.0).step == 2


def test_the_noise_level_is_the_flow_matching_time_of_sigma_t_over_one_minus_t():
    times = [0.999, 0.9, 0.5, 0.1]
    progress = SigmaProgress([t / (1 - t) for t in times] + [0.0])
    for t in times:
        assert progress.state(t / (1 - t)).noise_level == pytest.approx(t, rel=1e-12)


@pytest.mark.parametrize(
    ("sigmas", "message"),
    [
        ([5.0], "at least two"),
        ([5.0, 5.0, 0.0], "decrease strictly"),
        ([5.0, 0.0, 0.0], "positive"),
        ([math.inf, 1.0, 0.0], "positive and finite"),
    ],
)
def test_bad_schedules_are_refused(sigmas, message):
    with pytest.raises(ALGError, match=message):
        SigmaProgress(sigmas)
