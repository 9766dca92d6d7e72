"""Which pipeline call a denoiser call belongs to: the run of the enabled pipeline being called, if any.

Pipelines built from the same components (`Pipeline(**pipe.components)`, `from_pipe`) share their transformer
and scheduler, so a hook on the transformer cannot tell by itself which pipeline is sampling. The pipeline call
can: while an enabled pipeline's `__call__` runs, its run (holding the call's `arguments`) is the *active run*
of that thread (a context variable), and the denoiser hooks guide only calls made inside an active run, by the
denoisers it guides. Any other call - a sibling pipeline that did not enable ALG, the transformer called
directly - passes through untouched.

The pipeline's own `__call__` is looked up on its class, so the class gets a thin wrapper while at least one of
its instances is enabled (and loses it when the last one is disabled or garbage-collected). The same wrapping
records the first call of the method an adapter reads (`Adapter.captures`) into the active run: the pipeline's
own call, not the ones the adapter makes to encode a low-passed image. A pipeline that is
not enabled goes through the wrappers with one dictionary lookup and nothing else.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from ...adapters.base import Capture

_active: ContextVar[Any] = ContextVar("alg_guidance_active_run", default=None)
_lock = threading.Lock()
_wrapped: dict[tuple[type, str], tuple[int, Any]] = {}
"""(class, method name) -> (number of enabled instances using the wrapper, what the class dict held before)."""
_MISSING = object()


def active_run() -> Any:
    """The run of the enabled pipeline whose call is in progress in this thread, or `None`."""
    return _active.get()


def _arguments(signature: inspect.Signature, self: Any, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments by name, defaults applied, `self` left out."""
    bound = signature.bind(self, *args, **kwargs)
    bound.apply_defaults()
    return {key: value for key, value in bound.arguments.items() if key != "self"}


def _wrapper(cls: type, name: str, start_run: Callable[[Any], Any]) -> Callable[..., Any]:
    inherited = getattr(cls, name)
    signature = inspect.signature(inherited)
    if name == "__call__":

        @functools.wraps(inherited)
        def call(self, *args: Any, **kwargs: Any) -> Any:
            current = _active.get()
            if current is not None and current.pipeline is self:  # a nested call of the same pipeline
                return inherited(self, *args, **kwargs)
            run = start_run(self)
            if run is not None:
                run.arguments = _arguments(signature, self, args, kwargs)
            token = _active.set(run)
            try:
                return inherited(self, *args, **kwargs)
            finally:
                _active.reset(token)

        return call

    @functools.wraps(inherited)
    def capturing(self, *args: Any, **kwargs: Any) -> Any:
        result = inherited(self, *args, **kwargs)
        run = _active.get()
        if run is not None and run.pipeline is self and name not in run.captures:
            run.captures[name] = Capture(_arguments(signature, self, args, kwargs), result)
        return result

    return capturing


def wrap(cls: type, names: tuple[str, ...], start_run: Callable[[Any], Any]) -> None:
    """Wrap `cls`'s methods `names` (for one more enabled instance).

    Args:
        cls: The pipeline class.
        names: `"__call__"`, and the method whose calls the adapter reads.
        start_run: Makes the run of an instance's call: the pipeline's run if it is enabled, else `None`.
    """
    with _lock:
        for name in names:
            count, before = _wrapped.get((cls, name), (0, _MISSING))
            if count == 0:
                before = cls.__dict__.get(name, _MISSING)
                setattr(cls, name, _wrapper(cls, name, start_run))
            _wrapped[(cls, name)] = (count + 1, before)


def unwrap(cls: type, names: tuple[str, ...]) -> None:
    """Undo one `wrap(cls, names)`; the last one restores the class as it was."""
    with _lock:
        for name in names:
            count, before = _wrapped.pop((cls, name))
            if count > 1:
                _wrapped[(cls, name)] = (count - 1, before)
            elif before is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, before)
