"""Where the image condition sits among a k-diffusion denoiser's keyword inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...adapters.layouts import ConditionLayout, WholeInput
from ...errors import ALGError


def resolve_layout(layout: ConditionLayout | str | None, image_cond: Mapping[str, Any]) -> ConditionLayout:
    """The layout of the condition among `image_cond`, checked to find a tensor with height and width last.

    Args:
        layout: A layout; a keyword of `image_cond` (its [`WholeInput`][alg_guidance.adapters.layouts.WholeInput]);
            or `None` when `image_cond` holds exactly one tensor, which is then the condition.
        image_cond: The denoiser's keyword inputs that carry the image.

    Raises:
        ALGError: The layout finds no tensor of rank 2 or more in `image_cond`; the message lists its keys.
    """
    tensors = [name for name, value in image_cond.items() if isinstance(value, torch.Tensor)]
    if layout is None:
        if len(tensors) != 1:
            raise ALGError(
                f"image_cond holds {len(tensors)} tensors ({', '.join(tensors) or 'none'}); name the image condition "
                "with layout='<keyword>' or pass a ConditionLayout"
            )
        layout = tensors[0]
    if isinstance(layout, str):
        layout = WholeInput(layout)
    try:
        condition = layout.get(image_cond)
    except (KeyError, IndexError, RuntimeError) as error:
        keys = ", ".join(image_cond)
        raise ALGError(f"{layout} finds no image condition in image_cond (keys: {keys}): {error}") from None
    if not isinstance(condition, torch.Tensor) or condition.ndim < 2:
        raise ALGError(f"{layout} must find a tensor ending in (height, width) in image_cond, got {condition!r}")
    return layout
