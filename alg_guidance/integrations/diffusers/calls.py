"""The prediction in a diffusers denoiser's output, and the output with another prediction in its place."""

from __future__ import annotations

from typing import Any

import torch


def output_tensor(output: Any) -> torch.Tensor:
    """The prediction in a denoiser's output: a tensor, the first item of a tuple, or of a `BaseOutput`."""
    return output if isinstance(output, torch.Tensor) else output[0]


def output_tensors(output: Any, count: int) -> tuple[torch.Tensor, ...]:
    """The first `count` predictions in a denoiser's output (LTX-2's transformer predicts video and audio)."""
    if count == 1:
        return (output_tensor(output),)
    return tuple(output[index] for index in range(count))


def with_output_tensor(output: Any, tensor: torch.Tensor) -> Any:
    """`output` with its prediction replaced, in the same container."""
    return with_output_tensors(output, (tensor,))


def with_output_tensors(output: Any, tensors: tuple[torch.Tensor, ...]) -> Any:
    """`output` with its first `len(tensors)` predictions replaced, in the same container."""
    if isinstance(output, torch.Tensor):
        return tensors[0]
    if isinstance(output, tuple):
        return (*tensors, *output[len(tensors) :])
    keys = list(output.keys())[: len(tensors)]
    return type(output)(**{**output, **dict(zip(keys, tensors, strict=True))})
