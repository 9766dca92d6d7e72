"""Observing a diffusers pipeline run: what it hands its denoiser and its scheduler, and how often the model runs.

Nothing here changes what the pipeline computes: the recorders only copy tensors and count calls.
"""

from __future__ import annotations

import contextlib
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


class _RecordedStep:
    """A scheduler's `step` that records each prediction it is handed, then steps.

    A deep copy of the scheduler (LTX-2 steps its audio with one) gets a recorder of its own scheduler, recording
    into the same `Recording`: its predictions then follow the original's within each step.
    """

    def __init__(self, scheduler: Any, record: Recording) -> None:
        self.scheduler, self.record = scheduler, record
        # pipelines inspect step's signature to decide on passing generator / eta
        self.__signature__ = inspect.signature(type(scheduler).step.__get__(scheduler))

    def __call__(self, model_output: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        self.record.predictions.append(model_output.detach().clone())
        return type(self.scheduler).step(self.scheduler, model_output, *args, **kwargs)

    def __deepcopy__(self, memo: dict) -> _RecordedStep:
        return _RecordedStep(memo.get(id(self.scheduler), self.scheduler), self.record)


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


def model_inputs(call: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A recorded call's inputs, ready to pass to a denoiser again, with `changes` applied."""
    return {**{key: value for key, value in call.items() if key != "denoiser"}, **changes}


def assert_prediction(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5, message: str = "") -> None:
    """`got` equals `want` to `rtol` of the prediction's magnitude (batching changes float rounding slightly)."""
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale, msg=message or None)
