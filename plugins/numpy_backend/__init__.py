"""convexp's numpy backend, registered as a plugin through the ``convexp.backends`` entry point."""

from convexp.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    from .backend import NumpyBackend

    register(NumpyBackend())
