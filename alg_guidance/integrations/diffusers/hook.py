"""The diffusers hook on a denoiser that routes the calls of enabled pipelines' runs through ALG.

One [`ALGHook`][alg_guidance.integrations.diffusers.hook.ALGHook] sits on each guided denoiser module (two for
Wan 2.2's experts), shared by every enabled pipeline that holds the module. It keeps no state of any pipeline or
run: each call goes to the [active run][alg_guidance.integrations.diffusers.scope.active_run] of the pipeline
being called, if that run guides this module, and otherwise straight to the module's own forward.

Caching hooks (FirstBlockCache, MagCache, and any other stateful diffusers hook on the denoiser or its blocks)
keep state per cache context and need a constant batch in each: the extra branch then runs as its own call,
under the context `<name>_alg`. FasterCache and PyramidAttentionBroadcast are refused (see `REFUSED_CACHES`).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from typing import Any

import torch
from diffusers.hooks.faster_cache import FasterCacheBlockHook, FasterCacheDenoiserHook
from diffusers.hooks.hooks import BaseState, CacheContext, ModelHook, StateManager
from diffusers.hooks.pyramid_attention_broadcast import PyramidAttentionBroadcastHook

from ...errors import ALGError
from .scope import active_run

HOOK_NAME = "alg_guidance"
_FASTER_CACHE = ("FasterCache", "it approximates the unconditional branch from two-branch CFG batches")
REFUSED_CACHES: dict[type[ModelHook], tuple[str, str]] = {
    FasterCacheDenoiserHook: _FASTER_CACHE,
    FasterCacheBlockHook: _FASTER_CACHE,
    PyramidAttentionBroadcastHook: (
        "PyramidAttentionBroadcast",
        "it reuses attention outputs from call to call, counting on two branches per step",
    ),
}
"""The diffusers hooks ALG cannot run with: hook class -> (technique, why)."""


def _other_hooks(denoiser: torch.nn.Module) -> Iterator[ModelHook]:
    """The diffusers hooks on `denoiser` and its submodules, other than ALG's own.

    Read from the modules themselves, so that hooks applied with `diffusers.hooks.apply_*` count as well as those
    applied with `enable_cache`.
    """
    for module in denoiser.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            yield from (hook for name, hook in registry.hooks.items() if name != HOOK_NAME)


def refuse_incompatible_caches(denoisers: list[torch.nn.Module]) -> None:
    """Raise if a denoiser runs a caching technique that ALG cannot run with.

    Raises:
        ALGError: A denoiser carries a FasterCache or PyramidAttentionBroadcast hook.
    """
    for denoiser in denoisers:
        for hook in _other_hooks(denoiser):
            if type(hook) in REFUSED_CACHES:
                technique, reason = REFUSED_CACHES[type(hook)]
                raise ALGError(
                    f"ALG cannot run with {technique} on {type(denoiser).__name__}: {reason}, but ALG adds a third "
                    "branch. Remove it (disable_cache() on the denoiser, if enable_cache applied it), or use "
                    "FirstBlockCache or MagCache, which run ALG's extra branch under their own cache context"
                )


def has_caching_hooks(denoisers: list[torch.nn.Module]) -> bool:
    """Whether a denoiser carries a stateful diffusers hook (a cache), whose state is kept per cache context."""
    return any(hook._is_stateful for denoiser in denoisers for hook in _other_hooks(denoiser))


class _NoState(BaseState):
    def reset(self, *args, **kwargs) -> None:
        pass


class _ContextPerThread(StateManager):
    """The cache context diffusers sets on the hook, kept per thread.

    diffusers stores the context of a call on the module's hooks, so two threads sampling with pipelines that share
    a denoiser would see each other's contexts; ALG reads it to tell cond from uncond, and keeps each thread's own.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        super().__init__(_NoState)

    @property
    def _context(self) -> CacheContext | None:
        return getattr(self._local, "context", None)

    @_context.setter
    def _context(self, context: CacheContext | None) -> None:
        self._local.context = context


class ALGHook(ModelHook):
    """A diffusers `ModelHook` on one denoiser that hands the calls of an active ALG run to that run.

    It is stateful only so that diffusers hands it the `cache_context` name of each call (which tells the
    cond and uncond calls of sequential pipelines apart), which it keeps per thread.
    """

    _is_stateful = True

    def __init__(self) -> None:
        super().__init__()
        self.cache_context = _ContextPerThread()
        self.signature: inspect.Signature | None = None

    def initialize_hook(self, module: torch.nn.Module) -> torch.nn.Module:
        """Remember the denoiser's signature, to read its inputs by name."""
        self.signature = inspect.signature(module.forward)
        return module

    @torch.compiler.disable(recursive=False)
    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        """Run the call under the active run's ALG plan, or as the module's own forward outside any.

        Dynamo skips this frame's own control flow (which depends on the step and the branch, and would make a
        compiled denoiser recompile at every step) but still compiles the denoiser calls made from it.
        """
        run = active_run()
        if run is None or not run.guides(module):
            return self.original(*args, **kwargs)
        return run(self, module, args, kwargs)

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        """Nothing to forget: a run's state lives in the run."""
        return module

    def original(self, *args: Any, **kwargs: Any) -> Any:
        """The denoiser's forward as it was before this hook."""
        return self.fn_ref.original_forward(*args, **kwargs)

    def context(self) -> CacheContext | None:
        """The cache context the pipeline set for this call, if any."""
        try:
            return self.cache_context.context
        except ValueError:
            return None
