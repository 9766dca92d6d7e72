"""`alg-guidance plugins`: what is registered, and by which distribution."""

from __future__ import annotations

import typer

from ..registry import list_plugins


def plugins() -> None:
    """List plugins and the filters, schedules and adapters they add.

    With the distribution and version behind each plugin, and the reason for any that failed to load.
    """
    for plugin in list_plugins():
        where = f"{plugin.distribution} {plugin.version}" if plugin.distribution else "added by hand"
        typer.echo(f"{plugin.name} ({where})")
        if plugin.error:
            typer.echo(f"  skipped: {plugin.error}")
        for kind in ("filters", "schedules", "adapters"):
            names = getattr(plugin, kind)
            if names:
                typer.echo(f"  {kind}: {', '.join(names)}")
