"""Exceptions and warnings raised by alg-guidance."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Any

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxfrozenset = 6


def short_repr(value: Any) -> str:
    """`repr(value)` cut to a bounded size, for error messages about inputs of any size or depth.

    Examples:
        >>> short_repr("x" * 1000)
        "'xxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxx'"
        >>> short_repr([[[[1]]]])
        '[[[[...]]]]'
    """
    return _SHORT.repr(value)


class ALGError(Exception):
    """Base class of every error raised by alg-guidance."""


class ConfigError(ALGError, ValueError):
    """A configuration that cannot be used: unreadable text, or settings that do not fit the input.

    Raised for config text or files that cannot be read (bad syntax, a tag other than the standard ones,
    larger, deeper or more aliased than allowed, a wrong suffix, a missing file), for malformed `--set`
    overrides, and by a filter whose settings do not fit the condition it is applied to. The message names
    the source (file and line) or the parameter, and what is allowed. Values that are read but invalid raise
    `pydantic.ValidationError` instead, naming the field.
    """


class UnknownPluginError(ALGError, LookupError):
    """A filter, schedule, adapter or preset name that nothing registered."""

    def __init__(self, kind: str, name: object, available: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        message = f"unknown {kind} {short_repr(name)}; available: {', '.join(self.available) or '(none)'}"
        close = difflib.get_close_matches(name, self.available, n=1) if isinstance(name, str) else []
        if close:
            message += f" (did you mean {close[0]!r}?)"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class RegistrationError(ALGError):
    """A plugin registered something invalid, or a name that another plugin already took."""


class PluginLoadWarning(UserWarning):
    """A third-party plugin failed to load and was skipped; the message names its distribution."""
