"""An alg-guidance plugin that adds an edge-preserving median filter."""

from __future__ import annotations

from typing import Annotated, Literal

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
