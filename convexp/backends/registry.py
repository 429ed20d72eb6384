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
from typing import Any

import pluggy

from convexp.backends import hookspecs
from convexp.backends.features import ALL_FEATURES
from convexp.backends.protocol import Backend
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
    #: What of convexp's layer vocabulary it lacks (``convexp.backends.features.ALL_FEATURES`` less its features).
    missing: tuple[str, ...] = ()


def load_entry_points() -> None:
    """Register every plugin of the ``convexp.backends`` group (once; later calls do nothing).

    A plugin that fails to import, or whose hook implementations pluggy refuses (a wrong argument
    name, or a misspelled hook such as ``register_backend``), is left out and recorded in
    :data:`plugin_failures`, so one broken plugin does not break convexp."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    wanted = os.environ.get(LOAD_PLUGINS_ENV)
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and entry_point.name not in allowed:
            continue
        if pm.has_plugin(entry_point.name):
            continue
        try:
            pm.register(entry_point.load(), name=entry_point.name)
            if entry_point.dist is not None:
                _plugin_versions[entry_point.name] = entry_point.dist.version
        except Exception as exc:  # a broken plugin must not break the CLI
            plugin_failures[entry_point.name] = f"{type(exc).__name__}: {exc}"
    _drop_unknown_hooks()


def _drop_unknown_hooks() -> None:
    """Unregister each plugin with a hook implementation that matches no hookspec (``pm.check_pending``)."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or repr(exc.plugin)
            pm.unregister(exc.plugin)
            plugin_failures[name] = f"{exc} (the hooks convexp knows: {', '.join(_hook_names())})"


def _hook_names() -> list[str]:
    return sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "convexp_spec"))


_cache: tuple[tuple[tuple[str, int], ...], dict[str, Backend], dict[str, str]] | None = None


def get_backends() -> dict[str, Backend]:
    """Every registered backend by name, in plugin registration order (asked of the plugins again when they change).

    Each plugin's ``register_backends`` is called through pluggy on its own
    (``pm.subset_hook_caller``), so convexp knows which plugin registered which backend."""
    global _cache
    load_entry_points()
    _drop_unknown_hooks()  # also for plugins registered directly with pm.register
    hook = pm.hook.register_backends
    order = {name: index for index, (name, _) in enumerate(pm.list_name_plugin())}
    impls = sorted(hook.get_hookimpls(), key=lambda impl: order.get(impl.plugin_name, len(order)))
    key = tuple((impl.plugin_name, id(impl.plugin)) for impl in impls)
    if _cache is not None and _cache[0] == key:
        _backend_owners.clear()
        _backend_owners.update(_cache[2])
        return dict(_cache[1])
    backends: dict[str, Backend] = {}
    owners: dict[str, str] = {}
    for impl in impls:
        plugin_name = impl.plugin_name

        def register(backend: Backend, _plugin_name: str = plugin_name) -> None:
            if not isinstance(backend, Backend):
                raise ConvexpError(
                    f"plugin '{_plugin_name}' registered {backend!r}, which is not a convexp.backends.protocol.Backend"
                )
            if backend.name in backends and owners[backend.name] != _plugin_name:
                raise ConvexpError(
                    f"backend '{backend.name}' is registered by both '{owners[backend.name]}' and '{_plugin_name}'"
                )
            backends[backend.name] = backend
            owners[backend.name] = _plugin_name

        others = [other.plugin for other in impls if other.plugin is not impl.plugin]
        caller = pm.subset_hook_caller("register_backends", remove_plugins=others)
        try:
            caller(register=register)
        except ConvexpError:
            raise
        except Exception as exc:  # a plugin whose hook fails is shown as failed, the others still work
            plugin_failures[plugin_name] = f"register_backends failed: {type(exc).__name__}: {exc}"
    _backend_owners.clear()
    _backend_owners.update(owners)
    _cache = (key, backends, owners)
    return dict(backends)


def call_backend(backend: Backend, method: str, *args: Any) -> Any:
    """``backend.method(*args)``, a plugin's code: any error but convexp's own (and ``ValueError``, which
    the interface uses for bad input) becomes one line naming the backend and the method."""
    try:
        return getattr(backend, method)(*args)
    except (ConvexpError, ValueError):
        raise
    except Exception as exc:
        raise BackendUnavailableError(f"backend '{backend.name}': {method}() raised {type(exc).__name__}: {exc}") from None


def get_backend(name: str, *, require_usable: bool = True) -> Backend:
    """The backend called ``name``; raises if unknown, or if unusable and ``require_usable``."""
    backends = get_backends()
    if name not in backends:
        raise unknown_name("backend", name, backends)
    backend = backends[name]
    if require_usable:
        reason = call_backend(backend, "unavailable_reason")
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
        missing = tuple(sorted(ALL_FEATURES - backend.features))
        infos.append(
            BackendInfo(
                name, _backend_owners[name], plugin_version(name), backend.framework, version, reason is None, reason, missing
            )
        )
    for plugin_name, failure in plugin_failures.items():
        infos.append(
            BackendInfo(
                plugin_name,
                plugin_name,
                _plugin_versions.get(plugin_name, "unknown"),
                "?",
                None,
                False,
                f"plugin failed to load: {failure}",
            )
        )
    return infos
