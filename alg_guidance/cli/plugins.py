"""`alg-guidance plugins`: what is registered, and by which distribution."""

from __future__ import annotations

import typer

from ..registry import list_plugins


def plugins() -> None:
    """List the registered filters, schedules and adapters with the plugin and distribution behind them."""
    for plugin in list_plugins():
        where = f"{plugin.distribution} {plugin.version}" if plugin.distribution else "added by hand"
        typer.echo(f"{plugin.name} ({where})")
        if plugin.error:
            typer.echo(f"  skipped: {plugin.error}")
        for kind in ("filters", "schedules", "adapters"):
            names = getattr(plugin, kind)
            if names:
                typer.echo(f"  {kind}: {', '.join(names)}")
