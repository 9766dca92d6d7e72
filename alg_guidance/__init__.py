"""Adaptive Low-Pass Guidance (ALG) for image-to-video diffusion.

Importing the package imports torch, pydantic and pluggy only: no plugin is loaded until a filter,
schedule or adapter is first looked up, and diffusers and k-diffusion are imported only by the
integrations that need them. `enable`, `disable`, `ALGHandle` and `ALGGuidance` need the `diffusers` extra:
without it they are left out of `__all__` and `dir()`, and using one says what to install.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec

from .config import ALGConfig, resolve_config
from .errors import ALGError, ConfigError, PluginLoadWarning, RegistrationError, UnknownPluginError
from .filters import Filter
from .hookspecs import hookimpl
from .presets import Preset, get_preset, list_presets
from .registry import PluginInfo, Registry, default_registry, list_plugins
from .schedules import Schedule, StepState

try:
    __version__ = version("alg-guidance")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_DIFFUSERS_NAMES = ("ALGGuidance", "ALGHandle", "disable", "enable")


def __getattr__(name: str):
    """Import the diffusers and k-diffusion integrations on first use, never at package import."""
    if name in _DIFFUSERS_NAMES:
        try:
            from .integrations import diffusers
        except ModuleNotFoundError as error:
            if (error.name or "").partition(".")[0] != "diffusers":
                raise
            raise ModuleNotFoundError(
                f'alg_guidance.{name} needs diffusers, which is not installed: pip install "alg-guidance[diffusers]"',
                name=error.name,
            ) from error
        return getattr(diffusers, name)
    if name == "k_diffusion":
        from .integrations import k_diffusion

        return k_diffusion
    raise AttributeError(f"module 'alg_guidance' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, with the lazily imported ones that can be imported here."""
    return sorted({*globals(), *__all__})


__all__ = [
    "ALGConfig",
    "ALGError",
    "ConfigError",
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
    "get_preset",
    "hookimpl",
    "k_diffusion",
    "list_plugins",
    "list_presets",
    "resolve_config",
]
if find_spec("diffusers") is not None:  # exported only where `from alg_guidance import *` can import them
    __all__ += _DIFFUSERS_NAMES
