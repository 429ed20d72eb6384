"""Seeded augmentation: the shifted and flipped pixels against scipy's shift and numpy's flip, the draws, and a run
that trains on them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from convexp.model.augmentation import Augmentation, augment, epoch_draws
from tests.conftest import TINY_DIGITS, run_cli, write_experiments


def test_augmented_images_are_scipy_s_shift_with_zeros_then_a_left_right_flip():
    rng = np.random.default_rng(0)
    images = rng.random((5, 3, 7, 6)).astype(np.float32)
    shifts = np.array([[0, 0], [2, -1], [-2, 2], [1, 0], [-1, -2]])
    flips = np.array([False, True, False, True, True])
    out = augment(images, shifts, flips)
    assert out.dtype == np.float32 and out.shape == images.shape
    for n in range(5):
        expected = ndimage.shift(images[n], (0, *shifts[n]), order=0, mode="constant", cval=0.0)
        if flips[n]:
            expected = expected[:, :, ::-1]
        np.testing.assert_array_equal(out[n], expected)


def test_the_draws_are_seeded_per_epoch_uniform_over_the_shifts_and_flip_half():
    augmentation = Augmentation(shift=2, flip=True)
    shifts, flips = epoch_draws(augmentation, 20_000, epoch=1, seed=7)
    again, _ = epoch_draws(augmentation, 20_000, epoch=1, seed=7)
    other, _ = epoch_draws(augmentation, 20_000, epoch=2, seed=7)
    np.testing.assert_array_equal(shifts, again)
    assert not np.array_equal(shifts, other)
    counts = np.bincount(shifts.ravel() + 2, minlength=5)
    assert counts.min() > 0.19 * shifts.size and counts.max() < 0.21 * shifts.size  # -2..2, each a fifth
    assert 0.48 < flips.mean() < 0.52
    _, none = epoch_draws(Augmentation(shift=1), 100, epoch=1, seed=7)
    assert not none.any()


def test_an_augmented_run_trains_alike_on_every_backend_and_bad_settings_are_refused(tmp_path):
    pytest.importorskip("torch")
    spec = {**TINY_DIGITS, "max_steps": 4, "shared_init": True, "augmentation": {"shift": 1, "flip": True}}
    spec["optimizer"] = {"name": "sgd", "learning_rate": 0.5}
    experiments = write_experiments(
        tmp_path / "e.yaml",
        {"augmented": {**spec, "backend": ["numpy", "torch"]}, "bad": {**spec, "augmentation": {"shift": -1}}},
    )
    db = tmp_path / "r.db"
    ran = run_cli("run", str(experiments), "-e", "augmented", "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    from convexp.store import Store

    with Store(str(db)) as store:
        numpy_kernel, torch_kernel = (store.snapshot(run, "conv1", 4).kernel_array for run in (1, 2))
        plain = store.snapshot(1, "conv1", 0).kernel_array
    np.testing.assert_allclose(torch_kernel, numpy_kernel, atol=1e-5)
    assert np.abs(numpy_kernel - plain).max() > 1e-3  # it trained
    refused = run_cli("validate", str(experiments))
    assert refused.returncode != 0
    assert "augmentation.shift" in refused.stderr and "greater than or equal to 0" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
