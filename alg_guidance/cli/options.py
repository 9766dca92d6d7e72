"""Options and error reporting shared by several commands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import ALGConfig, resolve_config
from ..config_text import load_yaml
from ..errors import ALGError, ConfigError, short_repr

PresetOption = Annotated[str | None, typer.Option(help="A preset name (see `alg-guidance presets`).")]
ConfigOption = Annotated[
    Path | None, typer.Option(help="A .yaml, .yml or .json config file.", exists=True, dir_okay=False)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a config field, e.g. --set filter.factor=0.3 or --set schedule.end=0.1 (repeatable; "
        "values are read as YAML).",
    ),
]


def parse_overrides(assignments: list[str] | None) -> dict[str, Any]:
    """`["filter.factor=4e-1"]` as `{"filter.factor": 0.4}`; values are read as YAML, like config files.

    Raises:
        ConfigError: An assignment without `=` or a key, or a value that cannot be read as YAML.
    """
    overrides = {}
    for assignment in assignments or ():
        key, equals, value = assignment.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, such as filter.factor=0.3; got {short_repr(assignment)}")
        overrides[key.strip()] = load_yaml(value, f"--set {short_repr(key.strip())}")
    return overrides


def chosen_config(
    preset: str | None, config: Path | None, assignments: list[str] | None = None, default: str | None = "paper"
) -> ALGConfig | None:
    """The config named by `--preset` or `--config` (else `default`, a preset name), with the `--set` overrides.

    Returns `None` when neither is given and `default` is `None` (the caller picks the base later).

    Raises:
        typer.BadParameter: Both `--preset` and `--config`, an unknown preset, or an invalid override.
    """
    if preset and config:
        raise typer.BadParameter("give --preset or --config, not both")
    overrides = parse_overrides(assignments)
    source = config or preset or default
    if source is None:
        return None
    try:
        return resolve_config(source).merge(overrides)
    except (ALGError, ValueError) as error:
        raise typer.BadParameter(str(error), param_hint="--preset/--config/--set") from None


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the errors that explain a bad input (ALGError, ValueError, a missing file) into a message and exit 1."""
    try:
        yield
    except (ALGError, ValueError, FileNotFoundError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from None
