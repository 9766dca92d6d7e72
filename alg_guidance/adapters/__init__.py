"""Model adapters: per-model-family knowledge of where the image condition sits and how CFG runs."""

from __future__ import annotations

from ..hookspecs import hookimpl
from .base import Adapter

__all__ = ["Adapter"]

BUILTIN_ADAPTERS: tuple[type[Adapter], ...] = ()


@hookimpl
def alg_register_adapters(register) -> None:
    """Register the builtin adapters."""
    for adapter_class in BUILTIN_ADAPTERS:
        register(adapter_class)
