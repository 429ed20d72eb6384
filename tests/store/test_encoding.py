"""Kernel snapshots stored as XOR deltas: lossless against the recorded weights, readable without
convexp by the documented recipe, read the same through every store method, and kept readable by
thinning, packing, copying, failed writes and old databases."""

from __future__ import annotations

import contextlib
import re
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError

from convexp.errors import StoreError
from convexp.store import SnapshotToWrite, Store
from convexp.store.database import _alembic_config
from convexp.store.encoding import RAW, XOR_DELTA, XOR_ZSTD, ChainEncoder, decode_chain
from convexp.store.space import format_bytes, run_sizes, thin_run
from tests.conftest import TINY_DIGITS, decode_kernels, readme_read_kernel, run_cli, stored_kernels, write_experiments
from tests.store.test_store import RUN_FIELDS


def training_walk(steps: int, shape=(32, 16, 3, 3), seed: int = 0) -> list[np.ndarray]:
    """Kernels as training moves them: small steps from a random start."""
    rng = np.random.default_rng(seed)
    kernels = [rng.standard_normal(shape).astype(np.float32) * np.float32(0.2)]
    for _ in range(steps - 1):
        kernels.append(kernels[-1] - np.float32(1e-3) * rng.standard_normal(shape).astype(np.float32))
    return kernels


def rows_of(db, run_id: int = 1, layer: str = "conv2") -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return connection.execute(
            "SELECT step, encoding, base_step, length(kernel) FROM kernel_snapshots WHERE run_id = ? AND layer = ? ORDER BY step",
            (run_id, layer),
        ).fetchall()


@pytest.mark.parametrize("delta", [XOR_ZSTD, XOR_DELTA])  # what convexp writes, and wrote before
def test_chains_are_raw_every_tenth_snapshot_and_decode_bit_for_bit(delta):
    kernels = training_walk(25)
    encoder = ChainEncoder(delta)
    stored = []
    for step, kernel in enumerate(kernels):
        stored.append(encoder.encode(1, "conv1", step, kernel))
        encoder.commit()
    assert [s.encoding for s in stored] == ([RAW] + [delta] * 9) * 2 + [RAW] + [delta] * 4
    assert [s.base_step for s in stored[:3]] == [None, 0, 1]
    assert all(len(s.data) < 0.8 * kernels[0].nbytes for s in stored if s.encoding == delta)
    # the test's own decoder (the documented format) and convexp's agree with the kernels, bit for bit
    mine = decode_kernels((step, s.encoding, s.data) for step, s in enumerate(stored))
    theirs = dict(decode_chain((step, s.encoding, s.base_step, s.data) for step, s in enumerate(stored)))
    for step, kernel in enumerate(kernels):
        assert mine[step].tobytes() == theirs[step] == kernel.tobytes()


@pytest.mark.parametrize("delta", [XOR_ZSTD, XOR_DELTA])  # what convexp writes, and wrote before
def test_a_delta_that_would_not_be_smaller_is_stored_raw_and_so_are_a_new_shape_and_small_kernels(delta):
    rng = np.random.default_rng(1)
    encoder = ChainEncoder(delta)
    first = encoder.encode(1, "conv2", 0, rng.standard_normal((32, 16, 3, 3)).astype(np.float32))
    noise = rng.integers(0, 2**32, (32, 16, 3, 3), dtype=np.uint32).view(np.float32)  # every bit random
    unrelated = encoder.encode(1, "conv2", 1, noise)
    reshaped = encoder.encode(1, "conv2", 2, rng.standard_normal((16, 16, 3, 3)).astype(np.float32))
    assert [first.encoding, unrelated.encoding, reshaped.encoding] == [RAW, RAW, RAW]
    small = training_walk(3, shape=(8, 3, 3, 3))  # 864 bytes: under MIN_DELTA_BYTES
    assert {encoder.encode(1, "conv1", step, k).encoding for step, k in enumerate(small)} == {RAW}
    # without the floor, the same small kernels are deltas
    unfloored = ChainEncoder(delta, min_bytes=0)
    assert [unfloored.encode(1, "conv1", step, k).encoding for step, k in enumerate(small)] == [RAW, delta, delta]


@pytest.mark.parametrize("delta", [XOR_ZSTD, XOR_DELTA])  # what convexp writes, and wrote before
def test_a_broken_chain_is_an_error_naming_the_steps(delta):
    kernels = training_walk(3)
    encoder = ChainEncoder(delta)
    stored = [encoder.encode(1, "conv1", step, k) for step, k in enumerate(kernels)]
    with pytest.raises(StoreError, match="the snapshot at step 2 is a delta of step 1, but follows step 0"):
        list(decode_chain([(0, RAW, None, stored[0].data), (2, delta, 1, stored[2].data)]))


def test_a_failed_write_does_not_advance_the_chain(db_path):
    """A batch that rolls back leaves no row behind, so the next batch must not be a delta of it."""
    kernels = training_walk(4)
    with Store(db_path) as store:
        run_id = store.create_run(**RUN_FIELDS)
        store.record(run_id, snapshots=[SnapshotToWrite("conv2", 0, 0, kernels[0], None)])
        with pytest.raises(IntegrityError):  # step 1 together with a duplicate of step 0: refused whole
            store.record(
                run_id,
                snapshots=[SnapshotToWrite("conv2", 1, 0, kernels[1], None), SnapshotToWrite("conv2", 0, 0, kernels[0], None)],
            )
        store.record(run_id, snapshots=[SnapshotToWrite("conv2", s, 0, kernels[s], None) for s in (1, 2, 3)])
        series = store.kernel_series(run_id, "conv2")
    assert [(step, encoding, base) for step, encoding, base, _ in rows_of(db_path, run_id)] == [
        (0, RAW, None),
        (1, XOR_ZSTD, 0),
        (2, XOR_ZSTD, 1),
        (3, XOR_ZSTD, 2),
    ]
    np.testing.assert_array_equal(series.kernels, np.stack(kernels))


#: Two conv layers of a realistic width, every step for 3 epochs of the digits (23 steps each).
EVERY_STEP = {
    **TINY_DIGITS,
    "layers": [
        {"type": "conv", "filters": 16, "kernel_size": 3, "activation": "relu"},
        {"type": "conv", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "maxpool", "pool_size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ],
    "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
    "epochs": 3,
    "snapshots": {"every": 1},
}


@pytest.fixture(scope="module")
def every_step_run(tmp_path_factory):
    """A real training run with kernels at every step."""
    folder = tmp_path_factory.mktemp("encoded")
    path = write_experiments(folder / "e.yaml", {"every-step": EVERY_STEP})
    db = folder / "r.db"
    result = run_cli("run", str(path), "--db", str(db))
    assert result.returncode == 0, result.stderr
    return db


def test_a_real_run_is_stored_as_deltas_and_every_read_agrees_with_the_readme_recipe(every_step_run):
    db = every_step_run
    rows = rows_of(db, 1, "conv2")  # 32 x 16 x 3 x 3: 18 KB; conv1 (576 bytes) is raw throughout
    encodings = [encoding for _, encoding, _, _ in rows]
    assert encodings[0] == RAW and encodings.count(XOR_ZSTD) > len(rows) // 2
    assert {encoding for _, encoding, _, _ in rows_of(db, 1, "conv1")} == {RAW}
    # independent decoding (the test's own, from docs/guides/database.md's description of the format)
    expected = {layer: stored_kernels(db, layer) for layer in ("conv1", "conv2")}
    # the documented recipe, run as a user would copy it
    read_kernel = readme_read_kernel()
    with Store(db, must_exist=True) as store:
        for layer, kernels in expected.items():
            steps = sorted(kernels)
            series = store.kernel_series(1, layer)
            assert series.steps.tolist() == steps
            np.testing.assert_array_equal(series.kernels, np.stack([kernels[s] for s in steps]))
            for step in (0, 1, 9, 10, 11, 57, steps[-1]):
                assert step in kernels
                assert read_kernel(str(db), 1, layer, step).tobytes() == kernels[step].tobytes()
                assert store.snapshot(1, layer, step).kernel == kernels[step].tobytes()
            # a window that starts inside a chain and crosses the next raw row
            window = store.snapshots(1, layer, 7, 6)
            assert [s.step for s in window] == list(range(7, 13))
            assert all(s.kernel == kernels[s.step].tobytes() for s in window)
            # one filter across steps (decoded, not sliced by SQL) and at chosen steps
            got_steps, values = store.filter_series(1, layer, 3)
            assert got_steps == steps
            np.testing.assert_array_equal(values, np.stack([kernels[s][3] for s in steps]))
            got_steps, values = store.filter_series(1, layer, 0, steps=[5, 40])
            assert got_steps == [5, 40]
            np.testing.assert_array_equal(values, np.stack([kernels[5][0], kernels[40][0]]))


def test_thinning_an_encoded_run_keeps_the_kept_steps_bit_for_bit(every_step_run, tmp_path):
    db = tmp_path / "thin.db"
    db.write_bytes(every_step_run.read_bytes())
    before = {layer: stored_kernels(db, layer) for layer in ("conv1", "conv2")}
    with Store(db) as store:
        result = thin_run(store, 1, keep_every=7)
    kept = sorted({0, 23, 46, 69, *range(0, 70, 7)})
    assert result.kept_steps == len(kept) and result.rewritten_rows > 0
    for layer, kernels in before.items():
        after = stored_kernels(db, layer)
        assert sorted(after) == kept
        assert all(after[step].tobytes() == kernels[step].tobytes() for step in kept)
    # every delta's base is the kept row before it
    rows = rows_of(db)
    assert all(base == rows[i - 1][0] for i, (_, encoding, base, _) in enumerate(rows) if encoding != RAW)


def test_a_raw_run_packs_smaller_and_reads_the_same(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"every-step": {**EVERY_STEP, "epochs": 1}})
    db = tmp_path / "raw.db"
    result = run_cli("run", str(path), "--db", str(db), env={"CONVEXP_SNAPSHOT_ENCODING": "raw"})
    assert result.returncode == 0, result.stderr
    assert {encoding for _, encoding, _, _ in rows_of(db)} == {RAW}
    before = {layer: stored_kernels(db, layer) for layer in ("conv1", "conv2")}
    with Store(db) as store:
        size_before = run_sizes(store)[1].snapshot_bytes
    dry = run_cli("db", "pack", "1", "--dry-run", "--db", str(db))
    assert dry.returncode == 0 and "would re-encode" in dry.stdout, dry.stderr
    assert {encoding for _, encoding, _, _ in rows_of(db)} == {RAW}
    packed = run_cli("db", "pack", "1", "--db", str(db))
    assert packed.returncode == 0, packed.stderr
    with Store(db) as store:
        size_after = run_sizes(store)[1].snapshot_bytes
    freed = re.search(r"freed (.+)$", packed.stdout.strip()).group(1)
    assert size_after < size_before and freed == format_bytes(size_before - size_after)
    for layer, kernels in before.items():
        after = stored_kernels(db, layer)
        assert all(after[step].tobytes() == kernels[step].tobytes() for step in kernels)
    assert run_cli("compare", "1", "1", "--db", str(db)).returncode == 0
    # packing twice changes nothing more
    again = run_cli("db", "pack", "1", "--db", str(db))
    assert "re-encoded 0 snapshot row(s), freed 0 B" in again.stdout


def test_an_old_database_reads_as_raw_after_the_migration(tmp_path):
    """A database recorded at schema 0005 (float32 kernels, no encoding column) upgrades, reads the
    same, and goes on recording deltas."""
    from alembic import command

    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0005")
    engine.dispose()
    kernels = training_walk(5)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute(
            "INSERT INTO runs (id, experiment, backend, status, seed, dataset, kernel_initializer, bias_initializer, spec,"
            " convexp_version, backend_version, framework, framework_version, epochs_completed, steps_completed, started_at)"
            " VALUES (1, 'old', 'numpy', 'interrupted', 0, 'digits', 'glorot_uniform', 'zeros', '{}', '0', '0', 'numpy',"
            " '0', 0, 2, '2026-01-01 00:00:00')"
        )
        connection.executemany(
            "INSERT INTO kernel_snapshots (run_id, layer, step, epoch, shape, kernel, bias) VALUES (1, 'conv2', ?, 0, ?, ?, NULL)",
            [(step, "[32, 16, 3, 3]", kernels[step].tobytes()) for step in range(3)],
        )
        connection.commit()
    with Store(db) as store:  # migrates to the head
        assert [r[1] for r in rows_of(db)] == [RAW] * 3
        np.testing.assert_array_equal(store.kernel_series(1, "conv2").kernels, np.stack(kernels[:3]))
        store.record(1, snapshots=[SnapshotToWrite("conv2", s, 0, kernels[s], None) for s in (3, 4)])
        np.testing.assert_array_equal(store.kernel_series(1, "conv2").kernels, np.stack(kernels))
    assert [r[1] for r in rows_of(db)] == [RAW] * 4 + [XOR_ZSTD]
    assert run_cli("db", "pack", "1", "--db", str(db)).returncode == 0
    assert [r[1] for r in rows_of(db)] == [RAW] + [XOR_ZSTD] * 4
    with Store(db) as store:
        np.testing.assert_array_equal(store.kernel_series(1, "conv2").kernels, np.stack(kernels))


def test_a_bad_encoding_setting_is_one_clear_error(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"tiny": TINY_DIGITS})
    result = run_cli("run", str(path), "--db", str(tmp_path / "r.db"), env={"CONVEXP_SNAPSHOT_ENCODING": "gzip"})
    assert result.returncode == 1
    assert "CONVEXP_SNAPSHOT_ENCODING='gzip' is not a snapshot encoding; use one of raw, xor-zstd, xor-delta" in result.stderr
    assert "Traceback" not in result.stderr


# --- the Zstandard deltas (issue 45): any float32 bit pattern, and the rows written before them ---

#: float32 bit patterns training never makes but a kernel may hold: NaN payloads, -0.0, denormals, infinities.
ODD_WORDS = [0x7FC00001, 0xFFC12345, 0x7F800001, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F800000, 0xFF800000]


@settings(max_examples=60, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=6),
    data=st.data(),
)
def test_xor_zstd_round_trips_any_bit_pattern(shape, data):
    size = int(np.prod(shape))
    words = st.one_of(st.sampled_from(ODD_WORDS), st.integers(0, 2**32 - 1))
    first = data.draw(hnp.arrays(np.uint32, size, elements=words))
    flips = data.draw(hnp.arrays(np.uint32, (3, size), elements=st.sampled_from([0, 1, 0x80000000, 0x00400000, 0xFFFFFFFF])))
    series = [first]
    for flip in flips:
        series.append(series[-1] ^ flip)
    encoder = ChainEncoder(XOR_ZSTD, min_bytes=0)
    stored = []
    for step, kernel in enumerate(series):
        stored.append(encoder.encode(1, "conv", step, kernel.view("<f4").reshape(shape)))
        encoder.commit()
    decoded = dict(decode_chain((step, s.encoding, s.base_step, s.data) for step, s in enumerate(stored)))
    mine = decode_kernels((step, s.encoding, s.data) for step, s in enumerate(stored))  # the documented format
    for step, kernel in enumerate(series):
        assert decoded[step] == kernel.tobytes() == mine[step].tobytes()
        assert len(stored[step].data) <= kernel.nbytes  # never more than raw


def test_rows_written_as_xor_delta_keep_reading_beside_new_xor_zstd_rows(db_path):
    kernels = training_walk(8)
    with Store(db_path) as store:
        run_id = store.create_run(**RUN_FIELDS)
        store.encoder.encoding = XOR_DELTA  # as convexp wrote them before
        store.record(run_id, snapshots=[SnapshotToWrite("conv2", s, 0, kernels[s], None) for s in range(4)])
    with Store(db_path) as store:  # a later convexp: its own encoder, Zstandard deltas
        store.record(run_id, snapshots=[SnapshotToWrite("conv2", s, 0, kernels[s], None) for s in range(4, 8)])
        series = store.kernel_series(run_id, "conv2")
    assert [r[1] for r in rows_of(db_path, run_id)] == [RAW] + [XOR_DELTA] * 3 + [RAW] + [XOR_ZSTD] * 3
    np.testing.assert_array_equal(series.kernels, np.stack(kernels))
    recorded = stored_kernels(db_path, "conv2", run_id)  # the test's own decoder of the documented format
    assert all(recorded[s].tobytes() == kernels[s].tobytes() for s in range(8))
    assert run_cli("db", "check", "--db", str(db_path)).returncode == 0
