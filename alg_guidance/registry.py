"""The plugin registry: filters, schedules and adapters by name, from builtins and installed plugins.

A [`Registry`][alg_guidance.registry.Registry] loads lazily, on the first lookup, in a fixed order:

1. the block list: the names in the environment variable `ALG_GUIDANCE_BLOCK_PLUGINS` (comma-separated,
   matched case-insensitively against entry-point names, distribution names and builtin module names) are
   never loaded;
2. the builtin modules, registered through the same hooks as any plugin;
3. the entry points of the group `alg_guidance`, one plugin per entry point, each checked with
   `check_pending()` so that a misspelled hook name is caught;
4. the hooks, plugin by plugin, in load order.

A third-party plugin that fails at step 3 or 4 is skipped, with a
[`PluginLoadWarning`][alg_guidance.errors.PluginLoadWarning] naming its distribution and the error, and
nothing it registered is kept. The names of the builtins stay reserved when a builtin is blocked: a plugin that
registers one is skipped the same way. A failing builtin raises: that is a bug in alg-guidance itself.

Loading is atomic and thread-safe: threads that look something up at once wait for one load, and a load that
does not finish (a plugin warning turned into an error, a `SystemExit` or `KeyboardInterrupt` from a plugin)
leaves the registry unloaded, so that the next lookup loads it again.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points, version

import pluggy

from . import hookspecs
from .errors import PluginLoadWarning, RegistrationError, UnknownPluginError

ENTRY_POINT_GROUP = "alg_guidance"
BLOCK_ENV_VAR = "ALG_GUIDANCE_BLOCK_PLUGINS"
BUILTIN_PLUGINS = ("alg_guidance.filters", "alg_guidance.schedules", "alg_guidance.adapters")
KINDS = ("filter", "schedule", "adapter")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


@dataclass(frozen=True)
class PluginInfo:
    """One loaded (or failed) plugin and what it registered.

    Args:
        name: The plugin name: the entry-point name, or the module name of a builtin.
        distribution: The installed distribution that provides it, if any.
        version: That distribution's version.
        filters: The filter names it registered.
        schedules: The schedule names it registered.
        adapters: The adapter names it registered.
        error: Why it was skipped, or `None` if it loaded.
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    filters: tuple[str, ...] = ()
    schedules: tuple[str, ...] = ()
    adapters: tuple[str, ...] = ()
    error: str | None = None

    @property
    def provider(self) -> str:
        """The plugin and its distribution, as shown in error messages."""
        if self.distribution is None:
            return f"plugin {self.name!r}"
        return f"plugin {self.name!r} (distribution {self.distribution} {self.version})"


@dataclass
class _Pending:
    plugin: object
    info: PluginInfo
    registered: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})


def _base_classes() -> dict[str, type]:
    from .adapters import Adapter
    from .filters import Filter
    from .schedules import Schedule

    return {"filter": Filter, "schedule": Schedule, "adapter": Adapter}


def declared_name(kind: str, plugin_class: type) -> str:
    """The name a filter or schedule class declares in its `kind` field, or an adapter in `name`."""
    if kind == "adapter":
        name = getattr(plugin_class, "name", None)
    else:
        kind_field = plugin_class.model_fields.get("kind")
        name = None if kind_field is None else kind_field.default
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        where = "class variable `name`" if kind == "adapter" else "`kind: Literal[...]` field default"
        raise RegistrationError(
            f"{plugin_class.__qualname__} declares no valid {kind} name: give it a {where} made of "
            f"letters, digits, '_', '.' or '-', got {name!r}"
        )
    return name


def _distribution_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except Exception:
        return None


def normalized_name(name: str) -> str:
    """A plugin or distribution name as the block list compares it: lower case, runs of `-_.` as one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


class Registry:
    """Filters, schedules and adapters by name; builds itself on first use.

    The package keeps one default registry ([`default_registry`][alg_guidance.registry.default_registry]).
    Tests and embedders make their own, isolated ones.

    Args:
        builtins: Module names registered first, as plugins.
        entry_points: Whether to load the plugins installed under the entry-point group `alg_guidance`.
        blocked: Plugin names never to load. `None` reads the environment variable
            `ALG_GUIDANCE_BLOCK_PLUGINS` when the registry loads.

    Examples:
        >>> registry = Registry(entry_points=False)
        >>> registry.filter("downsample").__name__
        'Downsample'
    """

    def __init__(
        self,
        *,
        builtins: Iterable[str] = BUILTIN_PLUGINS,
        entry_points: bool = True,
        blocked: Iterable[str] | None = None,
    ) -> None:
        self._builtins = tuple(builtins)
        self._load_entry_points = entry_points
        self._blocked = None if blocked is None else tuple(blocked)
        self._extra: list[tuple[str, object]] = []
        self._lock = threading.RLock()
        self._loading = False
        self._loaded = False
        self._unload()

    def add_plugin(self, plugin: object, name: str) -> None:
        """Add a plugin object (a module, class or instance with hook functions) by hand.

        Plugins added before the registry loads are registered after the entry points; added later, they are
        registered at once. Errors raise rather than warn: the caller is in the room.

        Args:
            plugin: The object carrying `@hookimpl` functions.
            name: Its plugin name, as shown by [`plugins`][alg_guidance.registry.Registry.plugins].
        """
        with self._lock:
            if not self._loaded:
                self._extra.append((name, plugin))
                return
            self._register_plugin(_Pending(plugin, PluginInfo(name)), strict=True)

    def load(self) -> None:
        """Build the registry now instead of on first lookup; loading twice does nothing.

        Raises:
            RegistrationError: A plugin looked the registry up while it was loading.
        """
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            if self._loading:
                raise RegistrationError("a plugin looked up the registry while it was loading; look up at call time")
            self._loading = True
            try:
                self._load_all()
            except BaseException:
                self._unload()
                raise
            finally:
                self._loading = False
            self._loaded = True

    def _unload(self) -> None:
        """Back to the state before loading (a load that failed leaves nothing behind)."""
        self._tables: dict[str, dict[str, tuple[type, PluginInfo]]] = {kind: {} for kind in KINDS}
        self._reserved: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self._plugins: list[PluginInfo] = []
        self._manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._manager.add_hookspecs(hookspecs)

    def _load_all(self) -> None:
        blocked = {normalized_name(name) for name in self._blocked_names()}
        for module_name in self._builtins:
            module = importlib.import_module(module_name)
            if normalized_name(module_name) in blocked:
                self._reserve(module, module_name)
            else:
                self._register_plugin(_Pending(module, self._builtin_info(module_name)), strict=True)
        if self._load_entry_points:
            for entry_point in entry_points(group=ENTRY_POINT_GROUP):
                distribution = entry_point.dist.name if entry_point.dist is not None else ""
                if not {normalized_name(entry_point.name), normalized_name(distribution)} & blocked:
                    self._load_entry_point(entry_point)
        for name, plugin in self._extra:
            self._register_plugin(_Pending(plugin, PluginInfo(name)), strict=True)

    def _reserve(self, module: object, module_name: str) -> None:
        """Keep the names a blocked builtin would register, so that no plugin takes them unnoticed."""
        for kind in KINDS:
            implementation = getattr(module, f"alg_register_{kind}s", None)
            if implementation is not None:
                implementation(partial(self._reserve_name, kind, module_name))

    def _reserve_name(self, kind: str, module_name: str, plugin_class: type) -> None:
        self._reserved[kind][declared_name(kind, plugin_class)] = module_name

    def filter(self, kind: str) -> type:
        """The filter class registered as `kind`; the error lists the available kinds."""
        return self._lookup("filter", kind)

    def schedule(self, kind: str) -> type:
        """The schedule class registered as `kind`; the error lists the available kinds."""
        return self._lookup("schedule", kind)

    def adapter(self, name: str) -> type:
        """The adapter class registered as `name`; the error lists the available names."""
        return self._lookup("adapter", name)

    def filters(self) -> Mapping[str, type]:
        """Every registered filter class by kind, in registration order."""
        return self._table("filter")

    def schedules(self) -> Mapping[str, type]:
        """Every registered schedule class by kind, in registration order."""
        return self._table("schedule")

    def adapters(self) -> Mapping[str, type]:
        """Every registered adapter class by name, in registration order."""
        return self._table("adapter")

    def provider_of(self, kind: str, plugin_class: type) -> PluginInfo | None:
        """The plugin that registered `plugin_class` as a `kind` ("filter", "schedule" or "adapter"), if any."""
        self.load()
        return next((info for registered, info in self._tables[kind].values() if registered is plugin_class), None)

    def plugins(self) -> list[PluginInfo]:
        """Every plugin in load order: what it registered, or why it was skipped."""
        self.load()
        return list(self._plugins)

    def _blocked_names(self) -> tuple[str, ...]:
        if self._blocked is not None:
            return self._blocked
        raw = os.environ.get(BLOCK_ENV_VAR, "")
        return tuple(name.strip() for name in raw.split(",") if name.strip())

    @staticmethod
    def _builtin_info(module_name: str) -> PluginInfo:
        return PluginInfo(module_name, "alg-guidance", _distribution_version("alg-guidance"))

    def _load_entry_point(self, entry_point) -> None:
        distribution = entry_point.dist.name if entry_point.dist is not None else None
        info = PluginInfo(entry_point.name, distribution, entry_point.dist and entry_point.dist.version)
        try:
            plugin = entry_point.load()
        except Exception as error:
            self._fail(info, f"import of {entry_point.value!r} failed: {type(error).__name__}: {error}")
            return
        self._register_plugin(_Pending(plugin, info), strict=False)

    def _register_plugin(self, item: _Pending, *, strict: bool) -> None:
        manager = self._manager
        try:
            if manager.is_registered(item.plugin):
                raise RegistrationError(f"the same object is already plugin {manager.get_name(item.plugin)!r}")
            if manager.has_plugin(item.info.name):
                owner = next((info.provider for info in self._plugins if info.name == item.info.name), "")
                raise RegistrationError(f"the plugin name {item.info.name!r} is already taken by {owner}")
            manager.register(item.plugin, name=item.info.name)
            manager.check_pending()
            self._call_hooks(item)
        except Exception as error:
            self._rollback(item)
            if strict:
                raise
            self._fail(item.info, f"{type(error).__name__}: {error}")
            return
        self._plugins.append(
            PluginInfo(
                item.info.name,
                item.info.distribution,
                item.info.version,
                *(tuple(item.registered[kind]) for kind in KINDS),
            )
        )

    def _call_hooks(self, item: _Pending) -> None:
        for kind in KINDS:
            hook = getattr(self._manager.hook, f"alg_register_{kind}s")
            for implementation in hook.get_hookimpls():
                if implementation.plugin is item.plugin:
                    implementation.function(register=self._registrar(kind, item))

    def _registrar(self, kind: str, item: _Pending) -> Callable[[type], None]:
        base = _base_classes()[kind]

        def register(plugin_class: type, /) -> None:
            if not (isinstance(plugin_class, type) and issubclass(plugin_class, base)):
                raise RegistrationError(
                    f"register() in alg_register_{kind}s takes a subclass of {base.__module__}.{base.__name__}, "
                    f"got {plugin_class!r}"
                )
            name = declared_name(kind, plugin_class)
            table = self._tables[kind]
            if name in self._reserved[kind]:
                raise RegistrationError(
                    f"{kind} {name!r} from {item.info.provider} takes the name of a builtin {kind} of "
                    f"{self._reserved[kind][name]}, which is blocked; builtin names stay reserved"
                )
            if name in table:
                existing, provider = table[name]
                if existing is plugin_class:
                    return
                raise RegistrationError(
                    f"{kind} {name!r} from {item.info.provider} ({plugin_class.__module__}."
                    f"{plugin_class.__qualname__}) collides with {kind} {name!r} already registered by "
                    f"{provider.provider} ({existing.__module__}.{existing.__qualname__})"
                )
            table[name] = (plugin_class, item.info)
            item.registered[kind].append(name)

        return register

    def _rollback(self, item: _Pending) -> None:
        manager = self._manager
        for kind, names in item.registered.items():
            for name in names:
                del self._tables[kind][name]
            names.clear()
        if manager.is_registered(item.plugin) and manager.get_name(item.plugin) == item.info.name:
            manager.unregister(item.plugin)

    def _fail(self, info: PluginInfo, error: str) -> None:
        failed = PluginInfo(info.name, info.distribution, info.version, error=error)
        self._plugins.append(failed)
        warnings.warn(f"alg-guidance skipped {failed.provider}: {error}", PluginLoadWarning, stacklevel=4)

    def _table(self, kind: str) -> Mapping[str, type]:
        self.load()
        return {name: plugin_class for name, (plugin_class, _) in self._tables[kind].items()}

    def _lookup(self, kind: str, name: str) -> type:
        self.load()
        entry = self._tables[kind].get(name)
        if entry is None:
            raise UnknownPluginError(kind, name, self._tables[kind])
        return entry[0]


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The registry used when none is passed: builtins plus every installed plugin, built on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Registry()
    return _default


def list_plugins(registry: Registry | None = None) -> list[PluginInfo]:
    """Every plugin (builtin or installed) with its distribution, version and what it registered.

    Plugins that failed to load are listed too, with the reason in `error`.

    Examples:
        >>> [plugin.name for plugin in list_plugins()][:2]
        ['alg_guidance.filters', 'alg_guidance.schedules']
    """
    return (registry or default_registry()).plugins()
