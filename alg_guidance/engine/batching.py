"""One batching rule for every integration: cutting a caller's batched call into roles, merging branches into one call.

An input is *per-sample* when its first dimension runs over the batch: the integration names these inputs (a diffusers
adapter's `batched_inputs`) or, when it does not, every tensor whose first dimension equals the batch size counts,
and so do batch-1 tensors that differ between branches. A named input may hold several rows per sample, in sample
order (Wan's first-last-frame image embeddings: two per video), so its first dimension is a multiple of the batch.
A per-sample input of batch 1 broadcasts, as diffusers pipelines rely on with `num_videos_per_prompt` and batch-1
prompt embeddings: it is expanded to the batch before branches are concatenated. Every other input is shared and
must be the same object in all branches.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch

from ..errors import ALGError


def named_inputs(signature: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments by parameter name, `**kwargs` flattened in."""
    bound = signature.bind(*args, **kwargs)
    named = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[name] = value
    return named


def _is_per_sample(name: str, value: Any, batch: int, per_sample: Collection[str] | None) -> bool:
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return False
    if per_sample is not None:
        return name in per_sample
    return value.shape[0] == batch


def _broadcasts(values: Sequence[Any]) -> bool:
    """Whether differing values are batch-1 tensors, broadcast over the batch (detected when not named)."""
    return all(isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == 1 for value in values)


def split_batch(
    inputs: Mapping[str, Any], parts: int, batch: int, per_sample: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """A caller's call on `parts` stacked batches (say `[uncond, cond]`) as one input mapping per part.

    Per-sample inputs of the whole batch are cut into `parts` equal pieces; those of batch 1 (broadcast) and the
    shared inputs go to every part unchanged.

    Args:
        inputs: The call's inputs by name.
        parts: How many batches are stacked.
        batch: The call's whole batch size.
        per_sample: The names of the per-sample inputs; `None` to detect them by their first dimension.
    """
    pieces = [dict(inputs) for _ in range(parts)]
    for name, value in inputs.items():
        if _is_per_sample(name, value, batch, per_sample) and _rows_per_sample(value, batch):
            for piece, chunk in zip(pieces, value.chunk(parts), strict=True):
                piece[name] = chunk
    return pieces


def merge_inputs(
    branches: Sequence[Mapping[str, Any]], batch: int, per_sample: Collection[str] | None = None
) -> dict[str, Any]:
    """One call's inputs evaluating `branches` (each of batch `batch`) at once, in order.

    Raises:
        ALGError: A per-sample input has a batch other than `batch` or 1, or a shared input differs between
            branches.

    Examples:
        >>> x, text = torch.zeros(2, 3), torch.ones(1, 4)
        >>> merged = merge_inputs([{"x": x, "text": text}, {"x": x + 1, "text": text}], 2, per_sample={"x", "text"})
        >>> merged["x"].shape, merged["text"].shape
        (torch.Size([4, 3]), torch.Size([4, 4]))
    """
    merged: dict[str, Any] = {}
    for name, first in branches[0].items():
        values = [branch[name] for branch in branches]
        same = all(value is first for value in values) or (not isinstance(first, torch.Tensor) and _equal(values))
        if _is_per_sample(name, first, batch, per_sample) or (per_sample is None and not same and _broadcasts(values)):
            merged[name] = torch.cat([_to_batch(name, value, batch) for value in values])
        elif same:
            merged[name] = first
        else:
            raise ALGError(
                f"input {name!r} differs between branches but is not per-sample (its first dimension is not the "
                f"batch size {batch}), so the branches cannot run as one batch; use batch_branches=False"
            )
    return merged


def _equal(values: list[Any]) -> bool:
    try:
        return all(bool(value == values[0]) for value in values)
    except Exception:
        return False


def _rows_per_sample(value: torch.Tensor, batch: int) -> int:
    """How many rows of `value` belong to each sample of the batch; 0 if its first dimension does not run over it."""
    rows = value.shape[0]
    return rows // batch if rows >= batch and rows % batch == 0 else 0


def _to_batch(name: str, value: torch.Tensor, batch: int) -> torch.Tensor:
    if _rows_per_sample(value, batch):
        return value
    if value.shape[0] == 1:
        return value.expand(batch, *value.shape[1:])
    raise ALGError(
        f"per-sample input {name!r} has {value.shape[0]} rows, expected a multiple of the batch {batch} (or 1, "
        "broadcast)"
    )
