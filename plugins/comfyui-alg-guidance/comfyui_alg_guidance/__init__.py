"""ComfyUI nodes for Adaptive Low-Pass Guidance (alg-guidance): ALG on a video MODEL for every ComfyUI sampler."""

from __future__ import annotations

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
