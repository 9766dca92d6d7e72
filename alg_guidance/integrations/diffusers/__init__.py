"""ALG on stock diffusers pipelines.

[`enable`][alg_guidance.integrations.diffusers.enable] and [`disable`][alg_guidance.integrations.diffusers.disable]
are exported from the package root as `alg.enable` and `alg.disable`.
`enable` registers a diffusers `ModelHook` on the pipeline's denoiser (`pipe.transformer`, and
`pipe.transformer_2` for Wan 2.2): the modules stay the real models, so their config, dtype, LoRA loading,
`cache_context`, compilation and `save_pretrained` keep working, and any scheduler the pipeline holds works.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

from diffusers.hooks import HookRegistry

from ...adapters.base import Adapter
from ...config import resolve_config
from ...errors import ALGError
from ...registry import Registry, default_registry
from .hook import HOOK_NAME, ALGHook, GuidedRun, refuse_incompatible_caches
from .offload import model_offload_paused

_handles: weakref.WeakKeyDictionary[Any, ALGHandle] = weakref.WeakKeyDictionary()


class ALGHandle:
    """ALG enabled on one pipeline; leaving a `with` block (or calling `disable`) removes it.

    Attributes:
        pipeline: The pipeline.
        config: The ALG configuration in use.
        adapter: The adapter serving the pipeline.
    """

    def __init__(self, pipeline: Any, config: Any, adapter: Adapter) -> None:
        self.pipeline = pipeline
        self.config = config
        self.adapter = adapter

    def disable(self) -> None:
        """Remove ALG from the pipeline."""
        disable(self.pipeline)

    def __enter__(self) -> ALGHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if _handles.get(self.pipeline) is self:
            self.disable()

    def __repr__(self) -> str:
        return f"ALGHandle({type(self.pipeline).__name__}, adapter={self.adapter.name!r})"


def find_adapter(pipeline: Any, name: str | None = None, registry: Registry | None = None) -> type[Adapter]:
    """The adapter class for `pipeline`: the one named `name`, or the first registered one that matches.

    Raises:
        UnknownPluginError: `name` is not a registered adapter.
        ALGError: No adapter matches; the message lists the supported pipelines.
    """
    registry = registry or default_registry()
    if name is not None:
        return registry.adapter(name)
    for adapter_class in registry.adapters().values():
        if adapter_class.matches(pipeline):
            return adapter_class
    supported = sorted({pipeline for adapter in registry.adapters().values() for pipeline in adapter.pipelines})
    raise ALGError(
        f"no ALG adapter serves {type(pipeline).__name__}; supported pipelines: {', '.join(supported)}. "
        "A plugin can add an adapter for it (see 'Writing a plugin')."
    )


def enable(
    pipeline: Any, config: Any = None, *, adapter: str | None = None, registry: Registry | None = None
) -> ALGHandle:
    """Make `pipeline` sample with ALG.

    Args:
        pipeline: A supported diffusers image-to-video pipeline.
        config: An `ALGConfig`, a mapping, a preset name or a YAML/JSON path; the adapter's preset if `None`.
        adapter: The adapter's registry name, to choose one explicitly instead of detecting it.
        registry: Where to look up adapters, filters and schedules (the default registry if `None`).

    Returns:
        A handle; use it as a context manager, or call `disable`.

    Raises:
        ALGError: ALG is already enabled on `pipeline`, no adapter serves it, or the config asks for
            something the pipeline cannot do. Nothing is changed then.

    Examples:
        ```python
        with alg.enable(pipe, "wan2.1"):
            frames = pipe(image=image, prompt=prompt).frames[0]
        ```
    """
    if pipeline in _handles:
        raise ALGError(f"ALG is already enabled on this {type(pipeline).__name__}; call alg.disable(pipe) first")
    adapter_class = find_adapter(pipeline, adapter, registry)
    served = adapter_class(pipeline)
    config = resolve_config(adapter_class.preset if config is None else config, registry=registry)
    _check_compatible(served, config)
    run = GuidedRun(served, config)
    with model_offload_paused(pipeline, served.denoisers()):
        hooked = []
        try:
            for denoiser in served.denoisers():
                HookRegistry.check_if_exists_or_initialize(denoiser).register_hook(ALGHook(run), HOOK_NAME)
                hooked.append(denoiser)
            if config.space == "pixel" or served.needs_capture:
                _capture_pixels(served)
        except BaseException:
            _remove_hooks(hooked)
            raise
    handle = ALGHandle(pipeline, config, served)
    _handles[pipeline] = handle
    return handle


def disable(pipeline: Any) -> None:
    """Remove ALG from `pipeline`; its outputs are then bit-identical to a pipeline never enabled.

    Raises:
        ALGError: ALG is not enabled on `pipeline`.
    """
    handle = _handles.get(pipeline)
    if handle is None:
        raise ALGError(f"ALG is not enabled on this {type(pipeline).__name__}")
    with model_offload_paused(pipeline, handle.adapter.denoisers()):
        _remove_hooks(handle.adapter.denoisers())
        if handle.adapter.pixel_capture is not None:
            pipeline.__dict__.pop(handle.adapter.pixel_capture, None)
    del _handles[pipeline]


def _check_compatible(adapter: Adapter, config: Any) -> None:
    for denoiser in adapter.denoisers():
        if HOOK_NAME in HookRegistry.check_if_exists_or_initialize(denoiser).hooks:
            raise ALGError(f"{type(denoiser).__name__} already carries an ALG hook from another pipeline")
    refuse_incompatible_caches(adapter.denoisers())
    if config.space == "pixel" and adapter.pixel_capture is None:
        raise ALGError(f"the {adapter.name} adapter filters in latent space only; use space='latent'")


def _capture_pixels(adapter: Adapter) -> None:
    """Record the preprocessed image each run hands to the pipeline's `pixel_capture` method."""
    pipeline = adapter.pipeline
    original = getattr(pipeline, adapter.pixel_capture)
    signature = inspect.signature(original)

    def capturing(*args: Any, **kwargs: Any) -> Any:
        adapter.captured = signature.bind(*args, **kwargs)
        adapter.captured.apply_defaults()
        adapter.captured_result = original(*args, **kwargs)
        return adapter.captured_result

    setattr(pipeline, adapter.pixel_capture, capturing)


def _remove_hooks(denoisers: list[Any]) -> None:
    for denoiser in denoisers:
        registry = HookRegistry.check_if_exists_or_initialize(denoiser)
        if HOOK_NAME in registry.hooks:
            registry.remove_hook(HOOK_NAME, recurse=False)
