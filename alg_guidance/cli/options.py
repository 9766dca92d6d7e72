"""Options, input checks and the error boundary shared by the commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from typer.core import TyperCommand

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
# the errors that mean the input was wrong: ALG's own, invalid values (pydantic's ValidationError and
# ConfigError are ValueErrors) and files that cannot be read or written
INPUT_ERRORS = (ALGError, ValueError, OSError)


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
        typer.BadParameter: Both `--preset` and `--config`, an unknown preset, an unreadable or invalid config
            file, or an override that does not parse or does not fit the config.
    """
    if preset and config:
        raise typer.BadParameter("give --preset or --config, not both")
    source = config or preset or default
    try:
        overrides = parse_overrides(assignments)
        return None if source is None else resolve_config(source).merge(overrides)
    except INPUT_ERRORS as error:
        raise typer.BadParameter(describe(error), param_hint="--preset/--config/--set") from None


def describe(error: Exception) -> str:
    """An input error as one line: pydantic's validation errors as `field: problem`, one per invalid field."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, detail['loc'])) or 'config'}: {detail['msg']}" for detail in error.errors()
        )
    return str(error)


class InputError(typer.BadParameter):
    """A mistake in the input found while a command runs: `Error: <message>` under the usage line, exit status 2."""

    def format_message(self) -> str:
        """The message alone, with no parameter to name."""
        return self.message


class CheckedCommand(TyperCommand):
    """A command whose input errors end as usage errors (a short message, exit status 2) instead of tracebacks.

    The one error boundary of the application: every command is registered with this class.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        """Run the command, turning the errors of `INPUT_ERRORS` into an `InputError`."""
        try:
            return super().invoke(ctx)
        except INPUT_ERRORS as error:
            raise InputError(describe(error), ctx=ctx) from None


def path_check(check: Callable[[Path], object]) -> Callable[[Any], Any]:
    """A typer callback that runs `check` on an option's path, or on each of its paths, before the command starts.

    A `ValueError` or `OSError` that `check` raises becomes a `typer.BadParameter` naming the option.
    """

    def callback(value: Any) -> Any:
        for path in value if isinstance(value, list) else [] if value is None else [value]:
            try:
                check(path)
            except (ValueError, OSError) as error:
                raise typer.BadParameter(str(error)) from None
        return value

    return callback


def image_file(path: Path) -> None:
    """Refuse a file that Pillow cannot open as an image.

    Raises:
        ValueError: `path` is not an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            pass
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image (PNG, JPEG, WebP, BMP or another format Pillow reads)") from None


def output_folder(path: Path) -> None:
    """Refuse an output folder that is a file or whose parent folder does not exist (the folder itself is created).

    Raises:
        ValueError: The parent folder is missing, or `path` is a file.
    """
    if not path.parent.is_dir():
        raise ValueError(f"there is no folder {path.parent} to create {path.name} in; create it first")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give a folder")
