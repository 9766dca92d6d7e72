"""The inputs of the guided denoiser's branches: where the image condition sits, and one batch of several branches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ...adapters.layouts import ConditionLayout
from ...errors import ALGError


@dataclass(frozen=True)
class WholeInput:
    """The condition is a whole keyword input of the denoiser, with height and width as its last two dimensions.

    The layout of a k-diffusion denoiser that takes its image condition as its own argument (the denoisers
    [`from_pipeline`][alg_guidance.integrations.k_diffusion.pipeline.from_pipeline] builds take `condition`).
    The other layouts of [`alg_guidance.adapters.layouts`][alg_guidance.adapters.layouts] work as well, for a
    condition that shares an input with something else.

    Attributes:
        input: The keyword.

    Examples:
        >>> layout = WholeInput("image_latents")
        >>> layout.put({"image_latents": 1, "text": 2}, 3)
        {'image_latents': 3, 'text': 2}
    """

    input: str

    def get(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The input itself."""
        return inputs[self.input]

    def put(self, inputs: Mapping[str, Any], condition: torch.Tensor) -> dict[str, Any]:
        """The inputs with this one replaced."""
        return {**inputs, self.input: condition}


def resolve_layout(layout: ConditionLayout | str | None, image_cond: Mapping[str, Any]) -> ConditionLayout:
    """The layout of the condition among `image_cond`, checked to find a tensor with height and width last.

    Args:
        layout: A layout; a keyword of `image_cond` (its
            [`WholeInput`][alg_guidance.integrations.k_diffusion.branches.WholeInput]); or `None` when `image_cond`
            holds exactly one tensor, which is then the condition.
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


def merge_branches(branches: Sequence[Mapping[str, Any]], batch: int) -> dict[str, Any]:
    """The inputs of several branches as one batch, branch after branch along the first dimension.

    Tensors whose first dimension is the batch size `batch` are concatenated; any other input must be the very
    same object in every branch and is passed once.

    Raises:
        ALGError: An input differs between branches but does not carry the batch.
    """
    merged = {}
    for name, first in branches[0].items():
        values = [branch[name] for branch in branches]
        if isinstance(first, torch.Tensor) and first.ndim > 0 and first.shape[0] == batch:
            merged[name] = torch.cat(values)
        elif all(value is first for value in values):
            merged[name] = first
        else:
            raise ALGError(
                f"input {name!r} differs between the CFG branches but its first dimension is not the batch ({batch}), "
                "so the branches cannot run in one batch; set batch_branches=False in the config"
            )
    return merged
