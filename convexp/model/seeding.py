"""Every random stream a run draws from its seed, derived in this one module for every backend.

Initial weights come from :mod:`convexp.model.initializers` with a generator per layer, the batch order of each
epoch from a generator per epoch, and augmentation from a generator per epoch, so that a run is reproducible and
two backends given the same seed start from identical weights and see the same batches. A backend's own
randomness comes from here too: :func:`backend_rng` for a numpy generator, :func:`dropout_seed` for the seed of a
framework's dropout layer (one per layer, so that two dropout layers never draw the same masks), and
:func:`framework_seed` for a framework's global generator and its own initializers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convexp.model.initializers import fans_of, get_initializer
from convexp.model.layers import flat
from convexp.model.weights import KernelSnapshot

if TYPE_CHECKING:
    import numpy as np

    from convexp.model.layers import PlannedLayer

_WEIGHTS, _BATCHES, _BACKEND, _AUGMENTATION, _DROPOUT = 0, 1, 2, 3, 4


def initial_weights(
    layers: tuple[PlannedLayer, ...], kernel_initializer: str, bias_initializer: str, seed: int
) -> dict[str, KernelSnapshot]:
    """Kernel and bias of every conv and dense layer, drawn in canonical layout from ``seed``."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    weights = {}
    for layer in flat(layers):
        shape = layer.kernel_shape
        if shape is None:
            continue
        rng = np.random.default_rng([seed, _WEIGHTS, layer.index])
        fans = fans_of(shape)
        kernel = get_initializer(kernel_initializer).sample(shape, rng, fans)
        units = shape[0] if len(shape) == 4 else shape[1]
        bias = get_initializer(bias_initializer).sample((units,), rng, fans)
        weights[layer.name] = KernelSnapshot(kernel, bias)
    return weights


def batch_order(num_examples: int, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    """The order in which epoch ``epoch`` (1-based) visits the training examples."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    if not shuffle:
        return np.arange(num_examples)
    return np.random.default_rng([seed, _BATCHES, epoch]).permutation(num_examples)


def backend_rng(seed: int, stream: int = 0) -> np.random.Generator:
    """A generator for a backend's own randomness (e.g. dropout masks), independent of the shared draws."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    return np.random.default_rng([seed, _BACKEND, stream])


def augmentation_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of epoch ``epoch``'s augmentation draws (:mod:`convexp.model.augmentation`), shared by every backend."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    return np.random.default_rng([seed, _AUGMENTATION, epoch])


def dropout_seed(seed: int, layer_index: int) -> int:
    """The seed of dropout layer ``layer_index``'s masks, for a framework whose dropout layers take a seed each:
    distinct layers get distinct streams (one seed for all would give two layers of the same shape one mask)."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    return int(np.random.SeedSequence([seed, _DROPOUT, layer_index]).generate_state(1)[0] >> 1)


def framework_seed(seed: int, layer_index: int | None = None, part: int = 0) -> int:
    """The seed a framework's own generator starts from: the run's ``seed`` for its global generator (torch's
    dropout masks and initializers), and for a framework initializer of layer ``layer_index`` (``part`` 0 the
    kernel, 1 the bias) ``seed * 1000 + 2 * layer_index + part``. These are the values convexp has always used,
    kept so that runs recorded before reproduce."""
    if layer_index is None:
        return seed
    return seed * 1000 + 2 * layer_index + part
