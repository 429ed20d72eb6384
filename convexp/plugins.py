"""Finding backends: the pluggy plugin manager and the ``convexp.backends`` entry points.

Entry points are loaded once, lazily, on first use. Set ``CONVEXP_LOAD_PLUGINS`` to a
comma-separated list of entry-point names to load only those (an empty value loads
none), which keeps tests and debugging simple. A plugin that fails to import does not
break convexp: the failure is recorded and shown by ``convexp plugins``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata

import pluggy

from convexp import hookspecs
from convexp.backend import Backend
from convexp.errors import BackendUnavailableError, ConvexpError, unknown_name

ENTRY_POINT_GROUP = "convexp.backends"
LOAD_PLUGINS_ENV = "CONVEXP_LOAD_PLUGINS"

pm = pluggy.PluginManager("convexp")
pm.add_hookspecs(hookspecs)

_loaded = False
#: Entry-point name -> why it failed to load.
plugin_failures: dict[str, str] = {}
#: Backend name -> name of the plugin that registered it (filled by get_backends).
_backend_owners: dict[str, str] = {}
#: Plugin name -> version of the distribution that provides it.
_plugin_versions: dict[str, str] = {}


@dataclass(frozen=True)
class BackendInfo:
    """What ``convexp plugins`` shows for one backend."""

    name: str
    plugin: str
    plugin_version: str
    framework: str
    version: str | None
    usable: bool
    reason: str | None


def load_entry_points() -> None:
    """Register every plugin of the ``convexp.backends`` group (once; later calls do nothing)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    wanted = os.environ.get(LOAD_PLUGINS_ENV)
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and entry_point.name not in allowed:
            continue
        if pm.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
            pm.register(plugin, name=entry_point.name)
            if entry_point.dist is not None:
                _plugin_versions[entry_point.name] = entry_point.dist.version
        except Exception as exc:  # a broken plugin must not break the CLI
            plugin_failures[entry_point.name] = f"{type(exc).__name__}: {exc}"


_cache: tuple[tuple[int, ...], dict[str, Backend]] | None = None


def get_backends() -> dict[str, Backend]:
    """Every registered backend by name, in registration order (asked of the plugins again when they change)."""
    global _cache
    load_entry_points()
    registered = tuple(id(plugin) for _, plugin in pm.list_name_plugin())
    if _cache is not None and _cache[0] == registered:
        return dict(_cache[1])
    backends: dict[str, Backend] = {}
    owners: dict[str, str] = {}

    for plugin_name, plugin in pm.list_name_plugin():
        def register(backend: Backend, _plugin_name: str = plugin_name) -> None:
            if not isinstance(backend, Backend):
                raise ConvexpError(
                    f"plugin '{_plugin_name}' registered {backend!r}, which is not a convexp.backend.Backend"
                )
            if backend.name in backends and owners[backend.name] != _plugin_name:
                raise ConvexpError(
                    f"backend '{backend.name}' is registered by both '{owners[backend.name]}' and '{_plugin_name}'"
                )
            backends[backend.name] = backend
            owners[backend.name] = _plugin_name

        hook = getattr(plugin, "register_backends", None)
        if hook is not None:
            hook(register=register)
    _backend_owners.clear()
    _backend_owners.update(owners)
    _cache = (registered, backends)
    return dict(backends)


def get_backend(name: str, *, require_usable: bool = True) -> Backend:
    """The backend called ``name``; raises if unknown, or if unusable and ``require_usable``."""
    backends = get_backends()
    if name not in backends:
        raise unknown_name("backend", name, backends)
    backend = backends[name]
    if require_usable:
        reason = backend.unavailable_reason()
        if reason:
            raise BackendUnavailableError(f"backend '{name}' is unavailable: {reason}")
    return backend


def plugin_version(backend_name: str) -> str:
    """Version of the package whose plugin registered ``backend_name`` ("unknown" if not from an entry point)."""
    get_backends()
    return _plugin_versions.get(_backend_owners.get(backend_name, ""), "unknown")


def describe_backends() -> list[BackendInfo]:
    """One :class:`BackendInfo` per backend found, plus one per plugin that failed to load."""
    infos = []
    for name, backend in get_backends().items():
        reason = backend.unavailable_reason()
        version = None
        if reason is None:
            try:
                version = backend.framework_version()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
        infos.append(
            BackendInfo(
                name, _backend_owners[name], plugin_version(name), backend.framework, version, reason is None, reason
            )
        )
    for plugin_name, failure in plugin_failures.items():
        infos.append(
            BackendInfo(plugin_name, plugin_name, _plugin_versions.get(plugin_name, "unknown"), "?", None, False,
                        f"plugin failed to load: {failure}")
        )
    return infos
