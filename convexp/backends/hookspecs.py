"""The hooks a convexp plugin can implement.

A plugin is a module or object registered under the ``convexp.backends`` entry-point
group. convexp's own backends are plugins of exactly this kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from convexp.backends.protocol import Backend

hookspec = pluggy.HookspecMarker("convexp")
hookimpl = pluggy.HookimplMarker("convexp")
"""Marks a plugin's ``register_backends`` hook (pluggy's ``HookimplMarker`` for the project ``convexp``)."""


@hookspec
def register_backends(register: Callable[[Backend], None]) -> None:
    """Give convexp your backends: call ``register(backend)`` once for each.

    Called the first time convexp needs the list of backends. Registering must be
    cheap: do not import your framework here; do it inside the backend's methods, and
    report a missing framework through ``Backend.unavailable_reason``.
    """
