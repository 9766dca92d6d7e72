"""Tiny random-weight hunyuan pipelines, built from configs in code (to be written)."""

from __future__ import annotations

from .families import Family

FAMILIES: dict[str, Family] = {}
