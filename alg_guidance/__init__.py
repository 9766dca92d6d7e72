"""Adaptive Low-Pass Guidance (ALG) for image-to-video diffusion.

Importing the package imports torch, pydantic and pluggy only: no plugin is loaded until a filter,
schedule or adapter is first looked up, and diffusers and k-diffusion are imported only by the
integrations that need them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .config import ALGConfig, resolve_config
from .errors import ALGError, PluginLoadWarning, RegistrationError, UnknownPluginError
from .filters import Filter
from .hookspecs import hookimpl
from .presets import Preset, get_preset, list_presets
from .registry import PluginInfo, Registry, default_registry, list_plugins
from .schedules import Schedule, StepState

try:
    __version__ = version("alg-guidance")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    """Import the diffusers and k-diffusion integrations on first use, never at package import."""
    if name in ("enable", "disable", "ALGHandle"):
        from .integrations import diffusers

        return getattr(diffusers, name)
    if name == "k_diffusion":
        from .integrations import k_diffusion

        return k_diffusion
    raise AttributeError(f"module 'alg_guidance' has no attribute {name!r}")


__all__ = [
    "ALGConfig",
    "ALGError",
    "ALGHandle",
    "Filter",
    "PluginInfo",
    "PluginLoadWarning",
    "Preset",
    "Registry",
    "RegistrationError",
    "Schedule",
    "StepState",
    "UnknownPluginError",
    "__version__",
    "default_registry",
    "disable",
    "enable",
    "get_preset",
    "hookimpl",
    "list_plugins",
    "list_presets",
    "resolve_config",
]
