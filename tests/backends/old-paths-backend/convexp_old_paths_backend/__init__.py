"""The example backend as the plugin guide had it before convexp.plugin_api (commit d5c2b02), kept to prove that the old
import paths still work for a third party. Only its names changed (package, backend name), nothing it imports."""

from convexp.hookspecs import hookimpl


@hookimpl
def register_backends(register):
    from .backend import ExampleBackend  # import your framework lazily, inside the backend

    register(ExampleBackend())
