"""scikit-learn's bundled 8x8 digits: the dataset that needs no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convexp.datasets import Dataset

TEST_SIZE = 360
SPLIT_SEED = 20240607


def load(data_dir: Path | None = None) -> Dataset:
    """The 1,797 digits scaled to [0, 1] (pixel values are 0..16), split 1,437 train / 360 test.

    The split is fixed (its own seed), so runs with different seeds are evaluated on the
    same test images.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return Dataset("digits", images[train], labels[train], images[test], labels[test], 10)
