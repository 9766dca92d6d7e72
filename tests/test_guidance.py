from __future__ import annotations

from typing import ClassVar, Literal

import pytest
import torch

from alg_guidance.config import ALGConfig
from alg_guidance.errors import ALGError
from alg_guidance.filters import Downsample
from alg_guidance.guidance import LowPass, alg_prediction, batched_outputs, resolve_mode, sequential_uncond
from alg_guidance.schedules import Constant, Schedule, Step, StepState

generator = torch.Generator().manual_seed(0)
u_orig, c_lp, u_lp, c_orig = (torch.randn(2, 16, 3, 8, 8, dtype=torch.float64, generator=generator) for _ in range(4))
PER_FRAME_SCALE = torch.linspace(1.0, 3.0, 3, dtype=torch.float64).view(1, 1, 3, 1, 1)


def pipeline_cfg(uncond, cond, scale):
    """What every CFG pipeline computes from the two predictions it receives."""
    return uncond + scale * (cond - uncond)


def test_alg_prediction_is_the_published_rule():
    scale = 5.0
    expected = u_orig + scale * c_lp - scale * u_lp
    torch.testing.assert_close(alg_prediction(u_orig, c_lp, u_lp, scale), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [5.0, 6.0, 1.5, 0.5, PER_FRAME_SCALE])
def test_batched_outputs_make_the_pipelines_own_cfg_produce_alg(scale):
    uncond, cond = batched_outputs(u_orig, c_lp, u_lp)
    assert uncond is u_orig
    torch.testing.assert_close(pipeline_cfg(uncond, cond, scale), alg_prediction(u_orig, c_lp, u_lp, scale))


@pytest.mark.parametrize("scale", [5.0, 3.5, 1.01, 0.5, PER_FRAME_SCALE + 1])
def test_sequential_uncond_makes_the_pipelines_own_cfg_produce_alg(scale):
    uncond = sequential_uncond(u_orig, u_lp, scale)
    torch.testing.assert_close(pipeline_cfg(uncond, c_lp, scale), alg_prediction(u_orig, c_lp, u_lp, scale))


def test_sequential_uncond_refuses_a_scale_of_one():
    with pytest.raises(ALGError, match="exactly 1"):
        sequential_uncond(u_orig, u_lp, 1.0)


def test_with_an_unfiltered_condition_alg_is_plain_cfg():
    # when LP(I) = I the low-passed branches are the ordinary ones
    torch.testing.assert_close(alg_prediction(u_orig, c_orig, u_orig, 5.0), pipeline_cfg(u_orig, c_orig, 5.0))


@pytest.mark.parametrize(
    ("requested", "uses_cfg", "expected"),
    [
        ("auto", True, "alg"),
        ("auto", False, "replace"),
        ("alg", True, "alg"),
        ("replace", True, "replace"),
        ("replace", False, "replace"),
    ],
)
def test_resolve_mode(requested, uses_cfg, expected):
    assert resolve_mode(requested, uses_cfg) == expected


def test_mode_alg_without_cfg_is_refused_with_the_alternative():
    with pytest.raises(ALGError, match="use mode 'auto' or 'replace'"):
        resolve_mode("alg", uses_cfg=False)


class CountingDownsample(Downsample):
    """The down-up filter, counting how often it actually filters."""

    kind: Literal["counting-downsample"] = "counting-downsample"
    calls: ClassVar[list[float]] = []

    def filter_planes(self, planes, strength):
        self.calls.append(strength)
        return super().filter_planes(planes, strength)


@pytest.fixture
def counting():
    CountingDownsample.calls = []
    return CountingDownsample(factor=0.4)


def test_low_pass_filters_once_per_distinct_strength_per_run(counting):
    low_pass = LowPass(ALGConfig(filter=counting, schedule=Step(end=0.2)))
    condition = torch.randn(1, 20, 3, 12, 16)
    first = low_pass(condition, 1.0)
    for _ in range(9):
        assert low_pass(condition.clone(), 1.0) is first  # a fresh copy of the same run's condition
    low_pass(condition, 0.5)
    assert low_pass(condition, 0.0) is condition
    assert counting.calls == [1.0, 0.5]
    torch.testing.assert_close(first, Downsample(factor=0.4)(condition, 1.0), rtol=0, atol=0)
    low_pass.reset()
    low_pass(condition, 1.0)
    assert counting.calls == [1.0, 0.5, 1.0]


def test_low_pass_keeps_conditions_apart_by_key_and_shape(counting):
    low_pass = LowPass(ALGConfig(filter=counting))
    first_frame, last_frame = torch.randn(1, 16, 1, 8, 8), torch.randn(1, 16, 1, 8, 8)
    assert not torch.equal(low_pass(first_frame, 1.0, key="first"), low_pass(last_frame, 1.0, key="last"))
    low_pass(torch.randn(2, 16, 1, 8, 8), 1.0, key="first")
    assert len(counting.calls) == 3


def test_pixel_space_encodes_once_per_strength(counting):
    image = torch.rand(1, 3, 32, 32)
    encoded = []

    def encode(low_pass):
        encoded.append(low_pass(image))
        return encoded[-1].mean(dim=1, keepdim=True)

    low_pass = LowPass(ALGConfig(filter=counting, space="pixel"))
    for _ in range(5):
        latent = low_pass.encoded(1.0, encode)
    assert len(encoded) == 1 and latent.shape == (1, 1, 32, 32)
    torch.testing.assert_close(encoded[0], Downsample(factor=0.4)(image, 1.0), rtol=0, atol=0)
    low_pass.encoded(0.5, encode)
    assert counting.calls == [1.0, 0.5]


def test_strength_comes_from_the_schedule():
    low_pass = LowPass(ALGConfig(schedule=Step(end=0.2)))
    assert [low_pass.strength(StepState.from_step(i, 50)) for i in (0, 9, 10)] == [1.0, 1.0, 0.0]
    assert LowPass(ALGConfig(schedule=Constant(value=0.25))).strength(StepState.from_step(3, 4)) == 0.25


class Misbehaving(Schedule):
    kind: Literal["misbehaving"] = "misbehaving"

    def __call__(self, state):
        return torch.tensor(0.5) if state.step == 0 else 1.5


def test_a_schedule_returning_a_tensor_or_out_of_range_value_is_reported():
    low_pass = LowPass(ALGConfig(schedule=Misbehaving()))
    with pytest.raises(ALGError, match="schedule 'misbehaving' returned tensor"):
        low_pass.strength(StepState.from_step(0, 10))
    with pytest.raises(ALGError, match=r"returned 1\.5 .* a schedule must return a Python float in"):
        low_pass.strength(StepState.from_step(1, 10))
