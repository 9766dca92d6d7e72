"""Entry point for ComfyUI when this folder sits in `custom_nodes/`: the nodes of `comfyui_alg_guidance`."""

from .comfyui_alg_guidance import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = None
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
