"""convexp's TensorFlow backend (Keras 3 on TensorFlow), registered through the ``convexp.backends`` entry point.

Registering imports nothing from TensorFlow: the framework is imported when the backend is used.
"""

from convexp.plugin_api import hookimpl


@hookimpl
def register_backends(register):
    from .backend import TensorflowBackend

    register(TensorflowBackend())
