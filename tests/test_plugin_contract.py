"""The contract checks catch the plugin mistakes they promise to catch, and say which one it is."""

from __future__ import annotations

import contextlib
import re
import unittest
from typing import ClassVar, Literal

import pytest
import torch.nn.functional as F

from alg_guidance import Filter, Schedule
from alg_guidance.schedules import Adaptive, Step
from alg_guidance.testing import FILTER_CHECKS, check_filter, check_schedule
from alg_guidance.testing.plugins import check_per_plane, check_schedule_noise_level


class InPlaceBlur(Filter):
    """A box blur written into its input: a low-pass in every other respect."""

    kind: Literal["in-place-blur"] = "in-place-blur"

    def filter_planes(self, planes, strength):
        blurred = F.avg_pool2d(planes, 3, stride=1, padding=1, count_include_pad=False)
        return planes.copy_(planes + strength * (blurred - planes))


class NoiseWindow(Schedule):
    """Reads the noise level without declaring it, falling back to full strength without one."""

    kind: Literal["noise-window"] = "noise-window"

    def __call__(self, state):
        noise_level = 1.0 if state.noise_level is None else state.noise_level
        return 1.0 if noise_level > 0.2 else 0.0


class DeclaredNoiseWindow(NoiseWindow):
    """The same schedule, declared, and refusing to run without a noise level."""

    kind: Literal["declared-noise-window"] = "declared-noise-window"
    uses_noise_level: ClassVar[bool] = True

    def __call__(self, state):
        if state.noise_level is None:
            raise ValueError("declared-noise-window needs the noise level")
        return super().__call__(state)


IN_PLACE = re.escape("in-place-blur: filtering changed its input in place")


def test_an_in_place_filter_is_reported_as_in_place_not_as_a_per_plane_difference():
    with pytest.raises(AssertionError, match=IN_PLACE):
        check_per_plane(InPlaceBlur())
    with pytest.raises(AssertionError, match=IN_PLACE):
        check_filter(InPlaceBlur())


def test_the_same_filter_computed_into_a_new_tensor_passes():
    class Blur(InPlaceBlur):
        kind: Literal["blur"] = "blur"

        def filter_planes(self, planes, strength):
            return super().filter_planes(planes.clone(), strength)

    for check in FILTER_CHECKS:
        with contextlib.suppress(unittest.SkipTest):  # the CUDA checks, on a machine without a GPU
            check(Blur())


def test_a_schedule_that_reads_the_noise_level_undeclared_fails():
    with pytest.raises(
        AssertionError, match=re.escape("noise-window: reads state.noise_level but does not declare it")
    ):
        check_schedule_noise_level(NoiseWindow())


def test_a_schedule_whose_value_follows_the_noise_level_through_its_fields_fails():
    class DictReader(Schedule):
        kind: Literal["dict-reader"] = "dict-reader"

        def __call__(self, state):
            return 1.0 if (vars(state)["noise_level"] or 1.0) > 0.2 else 0.0

    with pytest.raises(AssertionError, match="dict-reader: its value depends on the noise level"):
        check_schedule_noise_level(DictReader())


@pytest.mark.parametrize("schedule", [DeclaredNoiseWindow(), Adaptive(), Step(end=0.2)], ids=lambda s: s.kind)
def test_declared_and_step_based_schedules_pass(schedule):
    check_schedule(schedule)
