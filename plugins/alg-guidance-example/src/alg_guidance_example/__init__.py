"""An alg-guidance plugin that adds an edge-preserving median filter and a schedule that fades with the noise level."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

import alg_guidance as alg


class Median(alg.Filter):
    """Median of each pixel's `(2r + 1) x (2r + 1)` neighbourhood, with `r = round(radius * strength)`.

    A median removes texture finer than its window but keeps step edges where a blur would smear them, so
    the low-passed condition keeps the layout of the scene while losing the detail that freezes motion.

    Args:
        radius: The window radius in pixels of the filtered tensor, at strength 1.
    """

    kind: Literal["median"] = "median"
    radius: Annotated[int, Field(strict=True, ge=1, le=8)] = 2

    def filter_planes(self, planes: torch.Tensor, strength: float) -> torch.Tensor:
        """Replace each pixel by the median of its window; the window shrinks with `strength`."""
        height, width = planes.shape[-2:]
        radius_y = min(round(self.radius * strength), height - 1)
        radius_x = min(round(self.radius * strength), width - 1)
        if radius_y == radius_x == 0:
            return planes
        padded = F.pad(planes, (radius_x, radius_x, radius_y, radius_y), mode="reflect")
        windows = padded.unfold(-2, 2 * radius_y + 1, 1).unfold(-2, 2 * radius_x + 1, 1)
        return windows.flatten(-2).median(dim=-1).values


@alg.hookimpl
def alg_register_filters(register):
    """Register the median filter."""
    register(Median)


class Smoothstep(alg.Schedule):
    """Full strength while the sample is mostly noise, fading smoothly to 0 as the noise level falls.

    The strength is 1 from noise level `threshold + ramp` up, 0 below `threshold`, and the smoothstep
    `3 u^2 - 2 u^3` of `u = (noise_level - threshold) / ramp` in between: the condition is released without the
    jump of a step schedule. Reading the noise level rather than the step index, it filters the same window
    under any step count, sampler or timestep shift.

    Args:
        threshold: The noise level below which the strength is 0, in `[0, 1)`.
        ramp: The width of the fade, in noise level, in `(0, 1]`.
    """

    kind: Literal["smoothstep"] = "smoothstep"
    uses_noise_level: ClassVar[bool] = True  # diffusers pipelines compute it only for schedules that declare it
    threshold: Annotated[float, Field(strict=True, ge=0, lt=1)] = 0.85
    ramp: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.1

    def __call__(self, state: alg.StepState) -> float:
        """The strength at `state.noise_level`."""
        if state.noise_level is None:
            raise alg.ALGError("the smoothstep schedule needs the noise level, and this sampler does not report it")
        u = min(max((state.noise_level - self.threshold) / self.ramp, 0.0), 1.0)
        return u * u * (3.0 - 2.0 * u)


@alg.hookimpl
def alg_register_schedules(register):
    """Register the smoothstep schedule."""
    register(Smoothstep)
