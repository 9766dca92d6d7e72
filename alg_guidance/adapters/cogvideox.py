"""Adapters for cogvideox pipelines (to be written)."""

from __future__ import annotations

from .base import Adapter

ADAPTERS: tuple[type[Adapter], ...] = ()
