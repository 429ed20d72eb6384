"""Every backend's dropout layers draw from streams derived in convexp.model.seeding: two dropout layers of one
network get different masks (a framework that seeds each layer, as Keras does, is given a seed per layer), and the
same seed gives the same masks again."""

from __future__ import annotations

import numpy as np
import pytest

from convexp.model.layers import Dense, Dropout, Flatten, plan
from convexp.model.seeding import backend_rng, dropout_seed, framework_seed, initial_weights

SEED = 7
#: Flatten the 8x8 digits to 64 values, then two dropout layers of the same shape, then the classifier.
PLANNED = tuple(
    plan(
        [
            Flatten(type="flatten"),
            Dropout(type="dropout", rate=0.5),
            Dropout(type="dropout", rate=0.5),
            Dense(type="dense", units=10),
        ],
        (1, 8, 8),
        10,
    )
)
ONES = np.ones((4, 64), dtype=np.float32)


def _numpy_masks(seed: int) -> list[np.ndarray]:
    from convexp_plugins.numpy_backend.model import DropoutLayer, Network

    network = Network(PLANNED, initial_weights(PLANNED, "glorot_uniform", "zeros", seed), backend_rng(seed))
    return [layer.forward(ONES.copy(), training=True) != 0 for layer in network.layers if isinstance(layer, DropoutLayer)]


def _torch_masks(seed: int) -> list[np.ndarray]:
    torch = pytest.importorskip("torch")
    from convexp_plugins.torch_backend.model import build

    model = build(PLANNED)
    model.train()
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    with torch.random.fork_rng():
        torch.manual_seed(framework_seed(seed))  # as the torch trainer seeds its masks
        return [(d(torch.ones(4, 64)) != 0).numpy() for d in dropouts]


def _tensorflow_masks(seed: int) -> list[np.ndarray]:
    pytest.importorskip("tensorflow")
    from convexp_plugins.tensorflow_backend.keras_import import keras
    from convexp_plugins.tensorflow_backend.model import build

    model = build(PLANNED, "glorot_uniform", "zeros", seed)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    return [np.asarray(layer(ONES, training=True)) != 0 for layer in dropouts]


@pytest.mark.parametrize("masks", [_numpy_masks, _torch_masks, _tensorflow_masks], ids=["numpy", "torch", "tensorflow"])
def test_two_dropout_layers_draw_different_masks_reproducibly(masks):
    first, second = masks(SEED)
    assert first.shape == second.shape == ONES.shape
    assert 0.3 < first.mean() < 0.7 and 0.3 < second.mean() < 0.7  # rate 0.5 drops about half
    assert not np.array_equal(first, second), "two dropout layers drew the same mask"
    again = masks(SEED)
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    other = masks(SEED + 1)
    assert not np.array_equal(other[0], first), "another seed drew the same mask"


def test_dropout_seeds_are_distinct_per_layer_and_fixed_per_seed():
    seeds = [dropout_seed(SEED, index) for index in range(50)]
    assert len(set(seeds)) == 50 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [dropout_seed(SEED, index) for index in range(50)]
    assert dropout_seed(SEED + 1, 3) != dropout_seed(SEED, 3)
