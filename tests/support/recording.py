"""Observing a diffusers pipeline run: what it hands its denoiser and its scheduler, and how often the model runs.

Nothing here changes what the pipeline computes: the recorders only copy tensors and count calls.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Recording:
    """What one or more pipeline runs did.

    Attributes:
        calls: The named inputs of every denoiser call the pipeline made, in order, with the denoiser's
            attribute name under "denoiser".
        predictions: The prediction the pipeline handed to `scheduler.step`, per step.
        evaluations: The batch size of every model evaluation (pipeline calls and ALG's extra branches).
    """

    calls: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[torch.Tensor] = field(default_factory=list)
    evaluations: list[int] = field(default_factory=list)


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


@contextlib.contextmanager
def recording(pipe: Any, denoisers: Sequence[str] = ("transformer",), counted: str = "proj_out") -> Iterator[Recording]:
    """Record the runs of `pipe` inside the block.

    Args:
        pipe: The pipeline.
        denoisers: Attribute names of the denoisers whose calls to record.
        counted: A submodule every model evaluation runs once (its first input's batch is counted).
    """
    record = Recording()
    handles = []
    for name in denoisers:
        module = getattr(pipe, name)
        signature = inspect.signature(module.forward)

        def pre_hook(module, args, kwargs, name=name, signature=signature):
            bound = signature.bind(*args, **kwargs).arguments
            record.calls.append({"denoiser": name, **{key: _clone(value) for key, value in bound.items()}})

        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(
            module.get_submodule(counted).register_forward_pre_hook(
                lambda module, args: record.evaluations.append(args[0].shape[0])
            )
        )
    pipe.scheduler.step = _RecordedStep(pipe.scheduler, record)
    try:
        yield record
    finally:
        del pipe.scheduler.step
        for handle in handles:
            handle.remove()


class _RecordedStep:
    """A scheduler's `step` that records the model output it is handed, then steps that scheduler.

    A deep copy of the scheduler gets a recorder that steps the copy: SkyReels-V2 diffusion forcing steps one copy
    of its scheduler per latent frame, and each must keep its own state.
    """

    def __init__(self, scheduler: Any, record: Recording) -> None:
        self.scheduler = scheduler
        self.record = record
        functools.update_wrapper(self, scheduler.step)  # pipelines inspect step's signature (generator, eta)

    def __call__(self, model_output: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        self.record.predictions.append(model_output.detach().clone())
        return type(self.scheduler).step(self.scheduler, model_output, *args, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> _RecordedStep:
        return _RecordedStep(memo.get(id(self.scheduler), self.scheduler), self.record)


def model_inputs(call: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A recorded call's inputs, ready to pass to a denoiser again, with `changes` applied."""
    return {**{key: value for key, value in call.items() if key != "denoiser"}, **changes}


def assert_prediction(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5, message: str = "") -> None:
    """`got` equals `want` to `rtol` of the prediction's magnitude (batching changes float rounding slightly)."""
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale, msg=message or None)
