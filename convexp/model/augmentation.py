"""Seeded data augmentation: random shifts (a random crop of the zero-padded image) and horizontal flips.

The draws are made here, in numpy, from the run's seed and the epoch, and the shifted and flipped
batch is handed to the backend (:func:`convexp.backends.trainer.run_epochs`), so every backend trains on the
same pixels for a seed, and a resumed run draws what the run left alone would have drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from convexp.model.seeding import augmentation_rng

if TYPE_CHECKING:
    import numpy as np


class Augmentation(BaseModel):
    """How each training image is changed before a step, drawn anew each epoch (test images never are).

    With ``shift`` s, the image is padded with s rows and columns of zeros on every side and cropped back to
    its size at a random offset: its content moves by dy rows and dx columns, each drawn uniformly from
    -s..s (the usual "pad and random crop"). With ``flip``, half the images, drawn at random, are then
    mirrored left to right."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shift: int = Field(default=0, ge=0, description="move each image by up to this many pixels in each direction")
    flip: bool = Field(default=False, description="mirror each image left to right with probability 1/2")

    @property
    def active(self) -> bool:
        """Whether it changes anything."""
        return self.shift > 0 or self.flip


def epoch_draws(augmentation: Augmentation, count: int, epoch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The shifts (count, 2) as (dy, dx) and flips (count,) of the ``count`` images an epoch visits, in its
    batch order: the i-th image the epoch visits gets row i."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    rng = augmentation_rng(seed, epoch)
    shifts = rng.integers(-augmentation.shift, augmentation.shift + 1, size=(count, 2))
    flips = rng.random(count) < 0.5 if augmentation.flip else np.zeros(count, dtype=bool)
    return shifts, flips


def augment(images: np.ndarray, shifts: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images moved by ``shifts`` (dy, dx) with zeros coming in at the edges, then mirrored left to
    right where ``flips``: a new array; output pixel (y, x) of image n is input pixel (y - dy, x - dx), or 0."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    n, channels, height, width = images.shape
    reach = int(np.abs(shifts).max(initial=0))
    padded = np.pad(images, ((0, 0), (0, 0), (reach, reach), (reach, reach)))
    rows = np.arange(height)[None, :] + reach - shifts[:, :1]  # (N, H): the padded row each output row reads
    cols = np.arange(width)[None, :] + reach - shifts[:, 1:]
    cols = np.where(flips[:, None], cols[:, ::-1], cols)  # mirroring reads the columns right to left
    moved = padded[
        np.arange(n)[:, None, None, None],
        np.arange(channels)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    return np.ascontiguousarray(moved, dtype=images.dtype)
