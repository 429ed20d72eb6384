"""An example convexp backend plugin."""

from convexp.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    from .backend import ExampleBackend

    register(ExampleBackend())
