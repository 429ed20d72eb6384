"""convexp's PyTorch backend, registered through the ``convexp.backends`` entry point.

Registering imports nothing from torch: the framework is imported when the backend is used.
"""

from convexp.plugin_api import hookimpl


@hookimpl
def register_backends(register):
    from .backend import TorchBackend

    register(TorchBackend())
