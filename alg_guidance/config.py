"""The validated ALG configuration, and its round trip through dicts, JSON and YAML."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .errors import UnknownPluginError
from .filters import Downsample, Filter
from .registry import Registry, default_registry
from .schedules import Schedule, Step

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


class ALGConfig(BaseModel):
    """Everything that defines an ALG run; frozen and validated.

    Filters and schedules are given as instances or as mappings with a `kind` (or just the kind's name),
    looked up in the registry, so third-party kinds work like builtins. A mapping may also start from a
    preset: `{"preset": "wan2.1", "filter": {"factor": 0.3}}`.

    Attributes:
        filter: The low-pass filter applied to the image condition.
        schedule: The strength of the filter at each step.
        space: `"latent"` filters the encoded condition (the paper's recommendation); `"pixel"` filters the
            image and encodes it again with the pipeline's VAE, once per distinct strength.
        mode: `"alg"` runs the three-branch ALG rule with classifier-free guidance; `"replace"` runs one
            branch with the low-passed condition (for guidance-distilled models or CFG scale 1); `"auto"`
            picks `"alg"` when the pipeline runs CFG and `"replace"` otherwise.
        batch_branches: Evaluate the extra low-pass branch in the same batch as the others (fastest) or as a
            separate call (peak memory within a few percent of plain CFG).

    Examples:
        >>> config = ALGConfig(filter={"kind": "downsample", "factor": 0.4}, schedule={"kind": "step", "end": 0.2})
        >>> ALGConfig.from_yaml(config.to_yaml()) == config
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    filter: SerializeAsAny[Filter] = Field(default_factory=Downsample)
    schedule: SerializeAsAny[Schedule] = Field(default_factory=Step)
    space: Literal["latent", "pixel"] = "latent"
    mode: Literal["auto", "alg", "replace"] = "auto"
    batch_branches: Annotated[bool, Field(strict=True)] = True

    @model_validator(mode="before")
    @classmethod
    def _start_from_preset(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "preset" in data:
            from .presets import get_preset

            try:
                preset = get_preset(data["preset"])
            except UnknownPluginError as error:
                raise _invalid(error, "preset", cls.__name__) from None
            rest = {key: value for key, value in data.items() if key != "preset"}
            return merge_overrides(preset.config.model_dump(), rest)
        return data

    @field_validator("filter", "schedule", mode="before")
    @classmethod
    def _resolve_kind(cls, value: Any, info: ValidationInfo) -> Any:
        registry = (info.context or {}).get("registry") or default_registry()
        return resolve_plugin(info.field_name, value, registry)

    def merge(self, overrides: Mapping[str, Any], *, registry: Registry | None = None) -> ALGConfig:
        """A new config with `overrides` applied and validated.

        Keys may be dotted (`"filter.factor"`). Filter and schedule parameters merge into the current ones
        unless the override names a different `kind`, which replaces them.

        Examples:
            >>> ALGConfig().merge({"filter.factor": 0.25}).filter.factor
            0.25
        """
        merged = merge_overrides(self.model_dump(), overrides)
        return ALGConfig.model_validate(merged, context={"registry": registry})

    def to_yaml(self) -> str:
        """The config as a YAML document."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, *, registry: Registry | None = None) -> ALGConfig:
        """Parse a YAML document (safe loading only: no Python tags)."""
        return cls.model_validate(yaml.safe_load(text), context={"registry": registry})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, registry: Registry | None = None) -> ALGConfig:
        """Load a `.yaml`, `.yml` or `.json` file."""
        path = Path(path)
        if path.suffix not in CONFIG_SUFFIXES:
            raise ValueError(f"config file {path} must end in one of {', '.join(CONFIG_SUFFIXES)}")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return cls.model_validate(json.loads(text), context={"registry": registry})
        return cls.from_yaml(text, registry=registry)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config to a `.yaml`, `.yml` or `.json` file."""
        path = Path(path)
        if path.suffix not in CONFIG_SUFFIXES:
            raise ValueError(f"config file {path} must end in one of {', '.join(CONFIG_SUFFIXES)}")
        text = self.model_dump_json(indent=2) if path.suffix == ".json" else self.to_yaml()
        path.write_text(text, encoding="utf-8")


def resolve_plugin(field: str, value: Any, registry: Registry) -> Any:
    """Turn a filter or schedule given as a kind name or mapping into an instance of its registered class."""
    base = Filter if field == "filter" else Schedule
    if isinstance(value, base):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping) or "kind" not in value:
        raise ValueError(
            f"{field} must be a {field} object, a {field} name, or a mapping with a 'kind' key, got {value!r}"
        )
    try:
        plugin_class = registry.filter(value["kind"]) if field == "filter" else registry.schedule(value["kind"])
    except UnknownPluginError as error:
        raise _invalid(error, "kind", base.__name__) from None
    return plugin_class.model_validate(dict(value))


def _invalid(error: UnknownPluginError, field: str, title: str) -> ValidationError:
    detail = InitErrorDetails(
        type=PydanticCustomError(f"unknown_{error.kind}", "{message}", {"message": str(error)}),
        loc=(field,),
        input=error.name,
    )
    return ValidationError.from_exception_data(title, [detail])


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `overrides` (with dotted keys allowed) into `base`; a different `kind` replaces a section."""
    merged = dict(base)
    for key, value in _expand_dotted(overrides).items():
        current = merged.get(key)
        same_kind = isinstance(value, Mapping) and value.get("kind", _kind(current)) == _kind(current)
        if isinstance(current, Mapping) and same_kind:
            merged[key] = merge_overrides(current, value)
        else:
            merged[key] = value
    return merged


def _kind(section: Any) -> Any:
    return section.get("kind") if isinstance(section, Mapping) else None


def _expand_dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    expanded: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, tail = str(key).partition(".")
        if tail:
            section = expanded.setdefault(head, {})
            if not isinstance(section, dict):
                raise ValueError(f"override {key!r} conflicts with a non-mapping value for {head!r}")
            section.update(_expand_dotted({tail: value}))
        else:
            expanded[head] = value
    return expanded


def resolve_config(source: Any, *, registry: Registry | None = None) -> ALGConfig:
    """An `ALGConfig` from whatever a user hands over.

    Args:
        source: An `ALGConfig`; a mapping of its fields; a preset name (see
            [`list_presets`][alg_guidance.presets.list_presets]); or the path of a `.yaml`, `.yml` or `.json` file.
        registry: The registry to look filter and schedule kinds up in (the default one if `None`).

    Raises:
        ValueError: `source` is none of these; a string that is neither a preset nor a config path lists the
            presets. Validation errors name the offending field.
    """
    if isinstance(source, ALGConfig):
        return source
    if isinstance(source, Mapping):
        return ALGConfig.model_validate(source, context={"registry": registry})
    if isinstance(source, os.PathLike) or (isinstance(source, str) and source.endswith(CONFIG_SUFFIXES)):
        return ALGConfig.from_file(source, registry=registry)
    if isinstance(source, str):
        from .presets import get_preset

        return get_preset(source).config
    raise TypeError(
        "an ALG config is an ALGConfig, a mapping, a preset name or a .yaml/.yml/.json path, "
        f"got {type(source).__name__}"
    )
