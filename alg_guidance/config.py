"""The validated ALG configuration, and its round trip through dicts, JSON and YAML."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

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

from .config_text import CONFIG_SUFFIXES, MAX_CONFIG_DEPTH, config_format, dump_yaml, load_yaml, read_config_file
from .errors import UnknownPluginError, short_repr
from .filters import Downsample, Filter
from .registry import Registry, default_registry
from .schedules import Schedule, Step


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
                raise _unknown(error, "preset", cls.__name__) from None
            rest = {key: value for key, value in data.items() if key != "preset"}
            return merge_overrides(preset.config.model_dump(), rest)
        return data

    @field_validator("filter", "schedule", mode="before")
    @classmethod
    def _resolve_kind(cls, value: Any, info: ValidationInfo) -> Any:
        registry = (info.context or {}).get("registry") or default_registry()
        return resolve_plugin(info.field_name, value, registry)

    def merge(self, overrides: Mapping[str, Any], *, registry: Registry | None = None) -> ALGConfig:
        """A new config with `overrides` applied and validated; neither this config nor `overrides` changes.

        Keys may be dotted (`"filter.factor"`). Filter and schedule parameters merge into the current ones
        unless the override names a different `kind`, which replaces them.

        Raises:
            pydantic.ValidationError: The overrides are not a mapping with string keys, two of them set the same
                field (`"filter"` and `"filter.factor"`), or the result is invalid; the error names the field.

        Examples:
            >>> ALGConfig().merge({"filter.factor": 0.25}).filter.factor
            0.25
        """
        merged = merge_overrides(self.model_dump(), overrides)
        return ALGConfig.model_validate(merged, context={"registry": registry})

    def to_yaml(self) -> str:
        """The config as a YAML document, which [`from_yaml`][alg_guidance.config.ALGConfig.from_yaml] reads back."""
        return dump_yaml(self.model_dump(mode="json"))

    @classmethod
    def from_yaml(cls, text: str, *, registry: Registry | None = None) -> ALGConfig:
        """Parse a YAML document with the package's one reader, `alg_guidance.config_text.load_yaml`.

        Raises:
            ConfigError: The text cannot be read: malformed, a tag other than the standard ones (no Python tags),
                too long, too deep or too aliased.
            pydantic.ValidationError: The text reads, but a value is invalid; the error names the field.
        """
        return cls.model_validate(load_yaml(text, "<config text>"), context={"registry": registry})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, registry: Registry | None = None) -> ALGConfig:
        """Load a `.yaml`, `.yml` or `.json` file, read by `alg_guidance.config_text.read_config_file`.

        Raises:
            ConfigError: The file cannot be read (a wrong suffix, missing, too large, malformed); the message names
                the file and the line.
            pydantic.ValidationError: A value is invalid; the error names the field.
        """
        return cls.model_validate(read_config_file(path), context={"registry": registry})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config to a `.yaml`, `.yml` or `.json` file.

        Raises:
            ConfigError: `path` has another suffix.
        """
        text = self.model_dump_json(indent=2) if config_format(path) == "json" else self.to_yaml()
        Path(path).write_text(text, encoding="utf-8")


def resolve_plugin(field: str, value: Any, registry: Registry) -> Any:
    """Turn a filter or schedule given as a kind name or mapping into an instance of its registered class.

    Raises:
        ValueError: `value` is neither an instance, a name nor a mapping with a `kind` key.
        pydantic.ValidationError: The kind is not a registered name (the error lists those that are), or the
            parameters are invalid.
    """
    base = Filter if field == "filter" else Schedule
    if isinstance(value, base):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping) or "kind" not in value:
        raise ValueError(
            f"{field} must be a {field} object, a {field} name, or a mapping with a 'kind' key, got {short_repr(value)}"
        )
    table = registry.filters() if field == "filter" else registry.schedules()
    kind = value["kind"]
    if not isinstance(kind, str) or kind not in table:
        raise _unknown(UnknownPluginError(field, kind, table), "kind", base.__name__)
    return table[kind].model_validate(dict(value))


def _unknown(error: UnknownPluginError, field: str, title: str) -> ValidationError:
    return _validation_error(title, (field,), f"unknown_{error.kind}", str(error), error.name)


def _validation_error(title: str, loc: tuple[str, ...], error_type: str, message: str, value: Any) -> ValidationError:
    detail = InitErrorDetails(
        type=PydanticCustomError(error_type, "{message}", {"message": message}), loc=loc, input=value
    )
    return ValidationError.from_exception_data(title, [detail])


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `overrides` (dotted keys allowed) into `base`, changing neither; a different `kind` replaces a section.

    Raises:
        pydantic.ValidationError: `overrides` is not a mapping with string keys, a dotted key has more than
            `MAX_CONFIG_DEPTH` parts, or two keys set the same field (`"filter"` and `"filter.factor"`).

    Examples:
        >>> merge_overrides({"filter": {"kind": "downsample", "factor": 0.4}}, {"filter.factor": 0.3})
        {'filter': {'kind': 'downsample', 'factor': 0.3}}
    """
    return _merge(base, _expand_dotted(overrides))


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        same_kind = isinstance(value, Mapping) and value.get("kind", _kind(current)) == _kind(current)
        if isinstance(current, Mapping) and same_kind:
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def _kind(section: Any) -> Any:
    return section.get("kind") if isinstance(section, Mapping) else None


def _expand_dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`{"filter.factor": 0.3}` as `{"filter": {"factor": 0.3}}`, in new dicts, refusing keys that overlap."""
    if not isinstance(overrides, Mapping):
        raise _validation_error(
            "overrides",
            (),
            "overrides_type",
            f"overrides must be a mapping of field names (dotted ones such as 'filter.factor' allowed) to values, "
            f"got {type(overrides).__name__}",
            overrides,
        )
    paths: dict[tuple[str, ...], str] = {}
    for key in overrides:
        if not isinstance(key, str) or key.count(".") >= MAX_CONFIG_DEPTH:
            raise _validation_error(
                "overrides",
                (short_repr(key),),
                "override_key",
                f"an override key is a field name, or at most {MAX_CONFIG_DEPTH} of them joined by dots "
                f"('filter.factor'), got {short_repr(key)}",
                key,
            )
        paths[tuple(key.split("."))] = key
    expanded: dict[str, Any] = {}
    for path, key in paths.items():
        outer = next((paths[path[:end]] for end in range(1, len(path)) if path[:end] in paths), None)
        if outer is not None:
            raise _validation_error(
                "overrides",
                path,
                "override_conflict",
                f"overrides {short_repr(outer)} and {short_repr(key)} both set {short_repr(key)}: give a section "
                "whole or field by field ('filter.kind', 'filter.sigma'), not both",
                overrides[key],
            )
        section = expanded
        for part in path[:-1]:
            section = section.setdefault(part, {})
        section[path[-1]] = overrides[key]
    return expanded


def resolve_config(source: Any, *, registry: Registry | None = None) -> ALGConfig:
    """An `ALGConfig` from whatever a user hands over.

    Args:
        source: An `ALGConfig`; a mapping of its fields; a preset name (see
            [`list_presets`][alg_guidance.presets.list_presets]); or the path of a `.yaml`, `.yml` or `.json` file.
        registry: The registry to look filter and schedule kinds up in (the default one if `None`).

    Raises:
        UnknownPluginError: A string that is neither a preset nor a config path; the message lists the presets.
        ConfigError: A config file that cannot be read; the message names the file, the line and what is allowed.
        pydantic.ValidationError: An invalid value; the error names the field and what it accepts.
        TypeError: `source` is none of these types.
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
