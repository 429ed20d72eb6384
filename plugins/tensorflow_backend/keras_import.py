"""Import TensorFlow and Keras 3 quietly, making sure Keras runs on TensorFlow.

TensorFlow's C++ runtime prints start-up notices straight to file descriptor 2 before
any logging setting applies; they are silenced for the duration of the import only.
Python exceptions from the import are raised as usual.
"""

from __future__ import annotations

import contextlib
import os
import sys

from convexp.plugin_api import BackendUnavailableError


@contextlib.contextmanager
def _quiet_native_stderr():
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "tensorflow"

with _quiet_native_stderr():
    import keras
    import tensorflow as tf

# Each run builds its own tf.functions; TensorFlow's warning about "retracing" them is noise here.
tf.get_logger().setLevel("ERROR")

if keras.backend.backend() != "tensorflow":
    raise BackendUnavailableError(
        f"Keras was already loaded with the '{keras.backend.backend()}' backend; "
        "the tensorflow backend needs KERAS_BACKEND=tensorflow"
    )

__all__ = ["keras", "tf"]
