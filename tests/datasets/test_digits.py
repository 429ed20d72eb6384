"""The bundled digits: built once from scikit-learn, then read from a small cache file without importing it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from convexp.datasets import digits


def test_digits_are_cached_and_read_back_without_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = digits.build()
    first = digits.load()  # builds and writes the cache
    cache = tmp_path / "convexp" / digits.CACHE_NAME
    assert cache.is_file() and cache.stat().st_size < 1_000_000
    for part in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(first, part), getattr(built, part))
    assert first.train_images.shape == (1437, 1, 8, 8) and first.test_labels.shape == (360,)
    code = (
        "import sys; from convexp.datasets import load_dataset, fingerprint; d = load_dataset('digits'); "
        "print(fingerprint(d), any(m.split('.')[0] == 'sklearn' for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    from convexp.datasets import fingerprint

    assert result.stdout.split() == [fingerprint(built), "False"]


def test_a_damaged_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "convexp" / digits.CACHE_NAME
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"not an npz file")
    data = digits.load()
    assert len(data.train_labels) == 1437
    with np.load(cache) as saved:
        np.testing.assert_array_equal(saved["test_labels"], data.test_labels)
