"""The random draws a run makes from its seed that every backend can share.

Initial weights come from :mod:`convexp.initializers` with a generator per layer, and
the batch order of each epoch from a generator per epoch, so that a run is reproducible
and two backends given the same seed can start from identical weights and see the
same batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convexp.initializers import fans_of, get_initializer
from convexp.types import KernelSnapshot

if TYPE_CHECKING:
    import numpy as np

    from convexp.layers import PlannedLayer

_WEIGHTS, _BATCHES, _BACKEND, _AUGMENTATION = 0, 1, 2, 3


def initial_weights(
    layers: tuple[PlannedLayer, ...], kernel_initializer: str, bias_initializer: str, seed: int
) -> dict[str, KernelSnapshot]:
    """Kernel and bias of every conv and dense layer, drawn in canonical layout from ``seed``."""
    import numpy as np

    from convexp.layers import flat

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
    import numpy as np

    if not shuffle:
        return np.arange(num_examples)
    return np.random.default_rng([seed, _BATCHES, epoch]).permutation(num_examples)


def backend_rng(seed: int, stream: int = 0) -> np.random.Generator:
    """A generator for a backend's own randomness (e.g. dropout masks), independent of the shared draws."""
    import numpy as np

    return np.random.default_rng([seed, _BACKEND, stream])


def augmentation_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of epoch ``epoch``'s augmentation draws (:mod:`convexp.augmentation`), shared by every backend."""
    import numpy as np

    return np.random.default_rng([seed, _AUGMENTATION, epoch])
