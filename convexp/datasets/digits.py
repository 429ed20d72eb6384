"""scikit-learn's bundled 8x8 digits: the dataset that needs no download.

The first load builds the split from scikit-learn and keeps it as a small array file in the user
cache (``$XDG_CACHE_HOME/convexp/digits-v1.npz``, 0.6 MB); later loads read that file, which spares
importing scikit-learn (seconds) at every start. A cache file that cannot be read is rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convexp.datasets.dataset import Dataset, cache_root

TEST_SIZE = 360
SPLIT_SEED = 20240607


#: The cache file; the version changes whenever the split or scaling below changes.
CACHE_NAME = "digits-v1.npz"
_PARTS = ("train_images", "train_labels", "test_images", "test_labels")


def load(data_dir: Path | None = None) -> Dataset:
    """The 1,797 digits scaled to [0, 1] (pixel values are 0..16), split 1,437 train / 360 test.

    The split is fixed (its own seed), so runs with different seeds are evaluated on the
    same test images.
    """
    path = cache_root() / CACHE_NAME
    try:
        with np.load(path, allow_pickle=False) as saved:
            parts = [saved[part] for part in _PARTS]
        return Dataset("digits", parts[0], parts[1], parts[2], parts[3], 10)
    except (OSError, ValueError, KeyError, EOFError):  # absent or damaged: build it
        pass
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as fh:
            np.savez(fh, **{part: getattr(data, part) for part in _PARTS})
        os.replace(temporary, path)  # whole or not at all, also with several processes at once
    except OSError:  # a read-only cache: fine, build it again next time
        pass
    return data


def build() -> Dataset:
    """The split, built from scikit-learn's copy of the digits."""
    from sklearn.datasets import load_digits  # heavy: loaded only when this is used

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return Dataset("digits", images[train], labels[train], images[test], labels[test], 10)
