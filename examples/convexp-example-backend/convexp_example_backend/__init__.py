"""An example convexp backend plugin."""

from convexp.plugin_api import hookimpl


@hookimpl
def register_backends(register):
    from .backend import ExampleBackend  # import your framework lazily, inside the backend

    register(ExampleBackend())
