"""Named settings per model, kept as data in `presets.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from .config import ALGConfig
from .config_text import load_yaml
from .errors import UnknownPluginError


@dataclass(frozen=True)
class Preset:
    """A named configuration and where it comes from.

    Args:
        name: The name to pass to `alg_guidance.enable` or the CLI.
        description: The models and settings it is meant for.
        tuned: Whether the ALG authors published these settings for this model; untuned presets start from
            the paper's default.
        source: Where the numbers come from.
        config: The configuration itself.
        shift: The timestep shift of the model's usual flow-matching sampler (1 where the model does not sample
            by flow matching, or its shift depends on the resolution, as LTX-Video's does); the
            [preview](preview.md)'s noise-level axis uses it.
    """

    name: str
    description: str
    tuned: bool
    source: str
    config: ALGConfig
    shift: float = 1.0


@cache
def _presets() -> dict[str, Preset]:
    data = load_yaml(files("alg_guidance").joinpath("presets.yaml").read_text(encoding="utf-8"), "presets.yaml")
    return {
        name: Preset(
            name,
            entry["description"],
            entry["tuned"],
            entry["source"],
            ALGConfig(**entry["config"]),
            entry.get("shift", 1.0),
        )
        for name, entry in data.items()
    }


def list_presets() -> list[Preset]:
    """Every preset, the tuned ones first.

    Examples:
        >>> [preset.name for preset in list_presets()][:3]
        ['paper', 'wan2.1', 'cogvideox']
    """
    return sorted(_presets().values(), key=lambda preset: not preset.tuned)


def get_preset(name: str) -> Preset:
    """The preset called `name`.

    Raises:
        UnknownPluginError: No preset has that name (or `name` is not a string); the message lists those that exist.
    """
    presets = _presets()
    if isinstance(name, str) and name in presets:
        return presets[name]
    raise UnknownPluginError("preset", name, presets)
