"""Splitting and merging the batched inputs and outputs of denoiser calls into CFG branches."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch


def named_inputs(signature: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by parameter name, `**kwargs` flattened in."""
    bound = signature.bind(*args, **kwargs)
    named = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[name] = value
    return named


def split_batch(inputs: Mapping[str, Any], batched: Sequence[str], parts: int) -> list[dict[str, Any]]:
    """`inputs` cut into `parts` equal batches along the first dimension of the `batched` inputs."""
    pieces = [dict(inputs) for _ in range(parts)]
    for name in batched:
        value = inputs.get(name)
        if isinstance(value, torch.Tensor):
            for piece, chunk in zip(pieces, value.chunk(parts), strict=True):
                piece[name] = chunk
    return pieces


def merge_batches(batches: Sequence[Mapping[str, Any]], batched: Sequence[str]) -> dict[str, Any]:
    """One input batch made of `batches` in order; the non-batched inputs are taken from the first."""
    merged = dict(batches[0])
    for name in batched:
        if isinstance(merged.get(name), torch.Tensor):
            merged[name] = torch.cat([batch[name] for batch in batches])
    return merged


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
