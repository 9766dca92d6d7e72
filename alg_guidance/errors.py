"""Exceptions and warnings raised by alg-guidance."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ALGError(Exception):
    """Base class of every error raised by alg-guidance."""


class UnknownPluginError(ALGError, LookupError):
    """A filter, schedule, adapter or preset name that nothing registered."""

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        message = f"unknown {kind} {name!r}; available: {', '.join(self.available) or '(none)'}"
        close = difflib.get_close_matches(name, self.available, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class RegistrationError(ALGError):
    """A plugin registered something invalid, or a name that another plugin already took."""


class PluginLoadWarning(UserWarning):
    """A third-party plugin failed to load and was skipped; the message names its distribution."""
