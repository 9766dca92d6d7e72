"""The ALG configuration a node's widgets describe: a preset, settings on top of it, or a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alg_guidance import ALGConfig, ALGError, list_presets, resolve_config
from alg_guidance.config_text import load_yaml

AUTO = "auto"
"""The preset widget's value for "the preset of the model's family"."""


def preset_names() -> list[str]:
    """The preset widget's choices: `auto`, then every preset."""
    return [AUTO, *(preset.name for preset in list_presets())]


def build_config(preset: str, settings: str = "", config_file: str = "", default_preset: str = "paper") -> ALGConfig:
    """The config of the widgets: `config_file` if given, else `preset`, with `settings` (a YAML mapping) merged in.

    Args:
        preset: A preset name, or `auto` for `default_preset`.
        settings: YAML or JSON overrides, dotted keys allowed (`filter.factor: 0.3`); empty for none.
        config_file: A `.yaml`, `.yml` or `.json` config file; empty for none.
        default_preset: The preset `auto` stands for.

    Raises:
        ValueError: A widget holds something invalid; the message names it and what is allowed.
    """
    try:
        if config_file.strip():
            path = Path(config_file.strip()).expanduser()
            if not path.is_file():
                raise ValueError(f"config_file {str(path)!r} is not a file")
            config = resolve_config(path)
        else:
            config = resolve_config(default_preset if preset == AUTO else preset)
        overrides = _settings(settings)
        config = config.merge(overrides) if overrides else config
    except (ALGError, ValidationError, TypeError) as error:
        raise ValueError(f"ALG settings are invalid: {error}") from None
    if config.space != "latent":
        raise ValueError("ALG in ComfyUI filters the latent condition: space must be 'latent'")
    return config


def _settings(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    loaded = load_yaml(text, "settings")
    if not isinstance(loaded, dict):
        raise ValueError(
            "settings must be a YAML mapping such as 'filter.factor: 0.3' or "
            f"'schedule: {{kind: adaptive, threshold: 0.9}}', got {type(loaded).__name__}"
        )
    return loaded
