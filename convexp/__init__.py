"""convexp: see what convolution filters are, and what they become as a network learns.

The package root stays light on purpose: ``import convexp`` and ``convexp --help``
import no numerical framework. Import the submodules you need:

- :mod:`convexp.model.initializers` — the initializer formulas (the one source of truth)
- :mod:`convexp.experiments.spec` — the experiments YAML format and its validation
- :mod:`convexp.backends.registry` — backend discovery through the ``convexp.backends`` entry points
- :mod:`convexp.experiments.runner` — run experiments and record them
- :mod:`convexp.store` — the results database
- :func:`convexp.track` (:mod:`convexp.tracking`) — record a run from your own training loop;
  :mod:`convexp.keras` (a Keras callback) and :mod:`convexp.torch` (a PyTorch helper) build on it
"""

from __future__ import annotations

from typing import Any

from convexp import _moved

__version__ = "0.1.0"

_moved.install()  # the module paths of earlier versions keep working (convexp/_moved.py)


def __getattr__(name: str) -> Any:
    """``convexp.track``, imported on first use (it needs the database layer, which ``import convexp`` does not load)."""
    if name == "track":
        from convexp.tracking import track  # convexp.track on first use: import convexp stays light

        return track
    raise AttributeError(f"module 'convexp' has no attribute {name!r}")
