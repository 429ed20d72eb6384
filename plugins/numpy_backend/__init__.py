"""convexp's numpy backend, registered as a plugin through the ``convexp.backends`` entry point."""

from convexp.plugin_api import hookimpl


@hookimpl
def register_backends(register):
    from .backend import NumpyBackend

    register(NumpyBackend())
