"""The prediction in a diffusers denoiser's output, and the output with another prediction in its place."""

from __future__ import annotations

from typing import Any

import torch


def output_tensor(output: Any) -> torch.Tensor:
    """The prediction in a denoiser's output: a tensor, the first item of a tuple, or of a `BaseOutput`."""
    return output if isinstance(output, torch.Tensor) else output[0]


def with_output_tensor(output: Any, tensor: torch.Tensor) -> Any:
    """`output` with its prediction replaced, in the same container."""
    if isinstance(output, torch.Tensor):
        return tensor
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    first = next(iter(output.keys()))
    return type(output)(**{**output, first: tensor})
