"""convexp: see what convolution filters are, and what they become as a network learns.

The package root stays light on purpose: ``import convexp`` and ``convexp --help``
import no numerical framework. Import the submodules you need:

- :mod:`convexp.initializers` — the initializer formulas (the one source of truth)
- :mod:`convexp.spec` — the experiments YAML format and its validation
- :mod:`convexp.plugins` — backend discovery through the ``convexp.backends`` entry points
- :mod:`convexp.runner` — run experiments and record them
- :mod:`convexp.store` — the results database
"""

__version__ = "0.1.0"
