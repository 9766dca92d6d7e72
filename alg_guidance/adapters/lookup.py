"""Finding the adapter that serves a pipeline, for every integration."""

from __future__ import annotations

from typing import Any

from ..errors import ALGError
from ..registry import Registry, default_registry
from .base import Adapter


def find_adapter(pipeline: Any, name: str | None = None, registry: Registry | None = None) -> Adapter:
    """The adapter for `pipeline`: the one named `name`, checked to serve it, or the first registered one that does.

    Raises:
        UnknownPluginError: `name` is not a registered adapter.
        ALGError: The named adapter cannot serve `pipeline`, or none does; the message says why and lists the
            supported pipelines (and, for a named adapter, the adapters that would serve it).
    """
    registry = registry or default_registry()
    if pipeline is None or isinstance(pipeline, (str, bytes, int, float)):
        raise ALGError(f"ALG guides a diffusers pipeline object, got {pipeline!r}")
    adapters = {adapter_name: adapter_class() for adapter_name, adapter_class in registry.adapters().items()}
    serving = [adapter for adapter in adapters.values() if adapter.matches(pipeline)]
    if name is not None:
        adapter = registry.adapter(name)()
        refusal = adapter.refusal(pipeline)
        if refusal is None:
            return adapter
        instead = f"; {', '.join(repr(a.name) for a in serving)} would serve it" if serving else ""
        raise ALGError(f"adapter {name!r} cannot serve this {type(pipeline).__name__}: {refusal}{instead}")
    if serving:
        return serving[0]
    supported = sorted({cls for adapter in adapters.values() for cls in adapter.pipelines})
    reasons = [
        f"{adapter.name}: {adapter.refusal(pipeline)}"
        for adapter in adapters.values()
        if type(pipeline).__name__ in adapter.pipelines
    ]
    why = f" ({'; '.join(reasons)})" if reasons else ""
    raise ALGError(
        f"no ALG adapter serves {type(pipeline).__name__}{why}; supported pipelines: {', '.join(supported)}. "
        "A plugin can add an adapter for it (see 'Writing a plugin')."
    )
