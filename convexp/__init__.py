"""convexp: see what convolution filters are, and what they become as a network learns.

The package root stays light on purpose: ``import convexp`` and ``convexp --help``
import no numerical framework. Its packages, one per concept (docs/layout.md maps every module):

- :mod:`convexp.model` — what a network is: layers, initializer formulas (the one source of truth), optimizers
- :mod:`convexp.backends` — what a backend is; a backend's author imports :mod:`convexp.plugin_api` alone
- :mod:`convexp.experiments` — the experiments YAML, its grids, and running and recording them
- :mod:`convexp.tracking` — :func:`convexp.track`, recording from your own training loop;
  :mod:`convexp.keras` (a Keras callback) and :mod:`convexp.torch` (a PyTorch helper) build on it
- :mod:`convexp.store` — the results database; :mod:`convexp.analysis` reads it back (``convexp.open(db)`` in a
  notebook: :mod:`convexp.analysis.notebook`)
- :mod:`convexp.ui` and :mod:`convexp.cli` — the web app and the command line, thin over the rest
- :mod:`convexp.datasets` — the data runs train on
"""

from __future__ import annotations

from typing import Any

from convexp import _moved

__version__ = "0.1.0"

#: ``convexp.track`` is loaded on first use (see ``__getattr__``). ``convexp.open`` is too, but stays out of
#: ``__all__``: ``from convexp import *`` would otherwise hide the built-in ``open``.
__all__ = ["__version__", "track"]

_moved.install()  # the module paths of earlier versions keep working (convexp/_moved.py)


def __getattr__(name: str) -> Any:
    """``convexp.track`` and ``convexp.open``, imported on first use (they need the database layer, which ``import
    convexp`` does not load)."""
    if name == "track":
        from convexp.tracking import track  # convexp.track on first use: import convexp stays light

        return track
    if name == "open":
        from convexp.analysis.notebook import open_results  # a results database in a notebook

        return open_results
    raise AttributeError(f"module 'convexp' has no attribute {name!r}")
