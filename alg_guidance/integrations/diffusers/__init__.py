"""ALG on stock diffusers pipelines.

[`enable`][alg_guidance.integrations.diffusers.enable] and [`disable`][alg_guidance.integrations.diffusers.disable]
are exported from the package root as `alg.enable` and `alg.disable`, and so is the guider
[`ALGGuidance`][alg_guidance.integrations.diffusers.guider.ALGGuidance] (`alg.ALGGuidance`), for pipelines that take a
diffusers guider.
`enable` registers a diffusers `ModelHook` on the pipeline's denoiser (`pipe.transformer`, and
`pipe.transformer_2` for Wan 2.2): the modules stay the real models, so their config, dtype, LoRA loading,
`cache_context`, compilation and `save_pretrained` keep working, and any scheduler the pipeline holds works.

Pipelines built from the same components share those modules. Each can enable its own config, or none: the hook
guides a denoiser call only inside a call of an enabled pipeline that holds that denoiser, with that pipeline's
config (see [`scope`][alg_guidance.integrations.diffusers.scope]). The state of a run lives in the run and is
dropped when the pipeline call returns; the module-wide tables hold pipelines weakly, so an enabled pipeline
that is dropped without `disable` is freed, and its hooks go with it.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks import HookRegistry
from diffusers.hooks.context_parallel import ContextParallelSplitHook

from ...adapters.base import Adapter
from ...adapters.lookup import find_adapter
from ...config import ALGConfig, resolve_config
from ...errors import ALGError
from ...registry import Registry
from ...schedules import StepState
from . import scope
from .guider import ALGGuidance
from .hook import HOOK_NAME, ALGHook, refuse_incompatible_caches
from .offload import model_offload_paused
from .run import PipelineRun

__all__ = ["ALGGuidance", "ALGHandle", "disable", "enable", "find_adapter"]


@dataclass(frozen=True)
class _Enabled:
    """What `enable` set up for one pipeline; holds no reference to the pipeline itself."""

    config: ALGConfig
    adapter: Adapter
    registry: Registry | None
    denoisers: tuple[torch.nn.Module, ...]
    wrapped: tuple[str, ...]
    release: weakref.finalize


_enabled: weakref.WeakKeyDictionary[Any, _Enabled] = weakref.WeakKeyDictionary()
_hooked: dict[int, tuple[torch.nn.Module, int, bool, bool]] = {}
"""id(module) -> (module, enabled pipelines holding it, registry existed before, `forward` in its dict before)."""
_lock = threading.RLock()


class ALGHandle:
    """ALG enabled on one pipeline; leaving a `with` block (or calling `disable`) removes it.

    Attributes:
        pipeline: The pipeline.
        config: The ALG configuration in use.
        adapter: The adapter serving the pipeline.
    """

    def __init__(self, pipeline: Any, config: ALGConfig, adapter: Adapter) -> None:
        self.pipeline = pipeline
        self.config = config
        self.adapter = adapter

    def disable(self) -> None:
        """Remove ALG from the pipeline."""
        disable(self.pipeline)

    def __enter__(self) -> ALGHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        enabled = _enabled.get(self.pipeline)
        if enabled is not None and enabled.config is self.config and enabled.adapter is self.adapter:
            self.disable()

    def __repr__(self) -> str:
        return f"ALGHandle({type(self.pipeline).__name__}, adapter={self.adapter.name!r})"


def _start_run(pipeline: Any) -> PipelineRun | None:
    enabled = _enabled.get(pipeline)
    if enabled is None:
        return None
    with _lock:
        for module in enabled.denoisers:
            _outside_context_parallelism(module)
    return PipelineRun(pipeline, enabled.adapter, enabled.config, enabled.registry)


def enable(
    pipeline: Any, config: Any = None, *, adapter: str | None = None, registry: Registry | None = None
) -> ALGHandle:
    """Make `pipeline` sample with ALG.

    Any number of pipelines sharing components can each enable ALG with their own config; one that does not
    enable it samples exactly as if ALG were not installed.

    Args:
        pipeline: A supported diffusers image-to-video pipeline.
        config: An `ALGConfig`, a mapping, a preset name or a YAML/JSON path; the adapter's preset if `None`.
        adapter: The adapter's registry name, to choose one explicitly instead of detecting it.
        registry: Where to look up adapters, filters and schedules (the default registry if `None`).

    Returns:
        A handle; use it as a context manager, or call `disable`.

    Raises:
        ALGError: ALG is already enabled on `pipeline`, no adapter serves it (or the named one cannot), or the
            config asks for something the pipeline cannot do. Nothing is changed then.

    Examples:
        ```python
        with alg.enable(pipe, "wan2.1"):
            frames = pipe(image=image, prompt=prompt).frames[0]
        ```
    """
    served = find_adapter(pipeline, adapter, registry)
    config = resolve_config(served.preset if config is None else config, registry=registry)
    denoisers = tuple(served.denoisers(pipeline))
    if config.space == "pixel" and not served.pixel_space:
        raise ALGError(f"the {served.name} adapter filters in latent space only; use space='latent'")
    if _filters_at_start(config):
        refuse_incompatible_caches(list(denoisers))  # else at the first run whose schedule filters
    wrapped = ("__call__",) if served.captures is None else ("__call__", served.captures)
    with _lock:
        if pipeline in _enabled:
            raise ALGError(f"ALG is already enabled on this {type(pipeline).__name__}; call alg.disable(pipe) first")
        with model_offload_paused(pipeline, denoisers):
            _hook(denoisers)
        scope.wrap(type(pipeline), wrapped, _start_run)
        release = weakref.finalize(pipeline, _release, type(pipeline), wrapped, denoisers)
        _enabled[pipeline] = _Enabled(config, served, registry, denoisers, wrapped, release)
    return ALGHandle(pipeline, config, served)


def disable(pipeline: Any) -> None:
    """Remove ALG from `pipeline`; its outputs are then bit-identical to a pipeline never enabled.

    The denoisers lose ALG's hook once no enabled pipeline holds them, and keep no trace of it.

    Raises:
        ALGError: ALG is not enabled on `pipeline`.
    """
    with _lock:
        if not _weakly_referable(pipeline):
            raise ALGError(f"alg.disable takes a diffusers pipeline that ALG was enabled on, got {pipeline!r}")
        enabled = _enabled.pop(pipeline, None)
        if enabled is None:
            raise ALGError(f"ALG is not enabled on this {type(pipeline).__name__}")
        enabled.release.detach()
        with model_offload_paused(pipeline, enabled.denoisers):
            _release(type(pipeline), enabled.wrapped, enabled.denoisers)


def _outside_context_parallelism(module: torch.nn.Module) -> None:
    """Put ALG's hook back outside diffusers' context-parallel hooks registered after it on `module`.

    diffusers runs the hook registered last outermost. `enable_parallelism` after `enable` puts its input split
    outside ALG's hook, and a model whose plan splits its inputs at the model itself (LTX-Video's token sequence)
    would hand ALG each rank's shard of the condition: ALG is moved back outside, so that it filters and splits the
    whole inputs, as when it is enabled after `enable_parallelism`.

    Raises:
        ALGError: A hook that replaces the forward was registered after context parallelism, so that ALG's hook
            cannot be moved (diffusers' `remove_hook` would unhook it).
    """
    registry = module._diffusers_hook
    later = registry._hook_order[registry._hook_order.index(HOOK_NAME) + 1 :]
    if not any(isinstance(registry.hooks[name], ContextParallelSplitHook) for name in later):
        return
    if any(hasattr(registry.hooks[name], "new_forward") for name in later):
        raise ALGError(
            f"ALG's hook on {type(module).__name__} sits inside context parallelism and another hook "
            f"({', '.join(later)}); call alg.enable after transformer.enable_parallelism"
        )
    registry.remove_hook(HOOK_NAME, recurse=False)
    registry.register_hook(ALGHook(), HOOK_NAME)


def _weakly_referable(pipeline: Any) -> bool:
    try:
        weakref.ref(pipeline)
    except TypeError:
        return False
    return True


def _filters_at_start(config: ALGConfig) -> bool:
    """Whether the schedule filters at the start of sampling (step 0, full noise)."""
    return config.schedule(StepState.from_step(0, 2, 1.0)) > 0.0


def _hook(denoisers: tuple[torch.nn.Module, ...]) -> None:
    """Put ALG's hook on each denoiser that has none yet; count one more pipeline holding each."""
    done: list[torch.nn.Module] = []
    try:
        for module in denoisers:
            entry = _hooked.get(id(module))
            if entry is not None:
                _hooked[id(module)] = (module, entry[1] + 1, entry[2], entry[3])
            else:
                had_registry, had_forward = hasattr(module, "_diffusers_hook"), "forward" in vars(module)
                HookRegistry.check_if_exists_or_initialize(module).register_hook(ALGHook(), HOOK_NAME)
                _hooked[id(module)] = (module, 1, had_registry, had_forward)
            done.append(module)
    except BaseException:
        _unhook(tuple(done))
        raise


def _unhook(denoisers: tuple[torch.nn.Module, ...]) -> None:
    """Count one pipeline fewer holding each denoiser; the last one removes the hook and what it left."""
    for module in denoisers:
        module_, count, had_registry, had_forward = _hooked.pop(id(module))
        if count > 1:
            _hooked[id(module)] = (module_, count - 1, had_registry, had_forward)
            continue
        registry = module._diffusers_hook
        registry.remove_hook(HOOK_NAME, recurse=False)
        if not registry.hooks:
            if not had_forward:
                vars(module).pop("forward", None)
            if not had_registry:
                del module._diffusers_hook


def _release(cls: type, wrapped: tuple[str, ...], denoisers: tuple[torch.nn.Module, ...]) -> None:
    """Undo what `enable` did for one pipeline (also called when an enabled pipeline is garbage-collected)."""
    with _lock:
        _unhook(denoisers)
        scope.unwrap(cls, wrapped)
