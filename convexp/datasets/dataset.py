"""What every dataset loads into, and where downloaded data is cached: the two things each dataset module shares
(a module of its own, so that the dataset modules and the registry in :mod:`convexp.datasets` do not import
each other)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def cache_root() -> Path:
    """convexp's folder in the user cache: ``$XDG_CACHE_HOME/convexp`` (default ``~/.cache/convexp``)."""

    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "convexp"


@dataclass(frozen=True)
class Dataset:
    """A train/test split as numpy arrays."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
