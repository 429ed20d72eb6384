"""Every snapshot row carries the CRC-32 of the kernel and bias it stands for; every reader checks it,
and `convexp db check` finds damage anywhere in the file: a flipped bit in a raw row or a delta, a
delta on the wrong base, a page of random bytes, and rows recorded before checksums existed."""

from __future__ import annotations

import contextlib
import random
import shutil
import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine

import convexp
from convexp.errors import DamagedSnapshotError
from convexp.store import Store
from convexp.store.check import check_database
from convexp.store.database import PAGE_SIZE, _alembic_config
from tests.conftest import decode_kernels, one_line_error, run_cli
from tests.store.test_encoding import training_walk

STEPS = 25  # conv2 (32 x 16 x 3 x 3, 18 KB) is raw at steps 0, 10, 20 and an XOR delta in between


def record_walks(db: str, runs: int = 2) -> dict[int, dict[str, list[np.ndarray]]]:
    """``runs`` tracked runs of two conv layers moving as training moves them; returns what was logged."""
    logged = {}
    for run in range(runs):
        conv1 = training_walk(STEPS, (8, 1, 3, 3), seed=10 + run)
        conv2 = training_walk(STEPS, (32, 16, 3, 3), seed=20 + run)
        bias = np.linspace(-1, 1, 32, dtype=np.float32) * (run + 1)
        with convexp.track("walk", db=db) as tracked:
            for step in range(STEPS):
                tracked.log_kernels({"conv1": (conv1[step], None), "conv2": (conv2[step], bias)}, step=step)
        logged[run + 1] = {"conv1": conv1, "conv2": conv2, "bias": bias}
    return logged


@pytest.fixture
def walks(tmp_path) -> tuple[Path, dict]:
    db = tmp_path / "walks.db"
    return db, record_walks(str(db))


def flip_bit(db: Path, run_id: int, layer: str, step: int, column: str = "kernel", at: float = 0.4) -> None:
    """Flip one bit of a stored row's bytes in place (the same length), as a bad disk would."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        (data,) = connection.execute(
            f"SELECT {column} FROM kernel_snapshots WHERE run_id = ? AND layer = ? AND step = ?", (run_id, layer, step)
        ).fetchone()
        data = bytearray(data)
        data[int(len(data) * at)] ^= 0x08
        connection.execute(
            f"UPDATE kernel_snapshots SET {column} = ? WHERE run_id = ? AND layer = ? AND step = ?",
            (bytes(data), run_id, layer, step),
        )
        connection.commit()


def encodings(db: Path, layer: str = "conv2") -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return [
            e
            for (e,) in connection.execute(
                "SELECT encoding FROM kernel_snapshots WHERE run_id = 1 AND layer = ? ORDER BY step", (layer,)
            )
        ]


def test_every_row_carries_the_crc32_of_the_kernel_and_bias_it_stands_for(walks):
    db, logged = walks
    assert encodings(db)[:3] == ["raw", "xor-zstd", "xor-zstd"]
    with contextlib.closing(sqlite3.connect(db)) as connection:
        for run_id, layers in logged.items():
            for layer in ("conv1", "conv2"):
                rows = connection.execute(
                    "SELECT step, encoding, kernel, bias, checksum FROM kernel_snapshots WHERE run_id = ? AND layer = ? ORDER BY step",
                    (run_id, layer),
                ).fetchall()
                kernels = decode_kernels((step, encoding, blob) for step, encoding, blob, _, _ in rows)
                for step, _, _, bias, checksum in rows:
                    # independent of convexp: zlib over the logged float32 bytes, then the logged bias's
                    expected = zlib.crc32(layers[layer][step].astype("<f4").tobytes())
                    if layer == "conv2":
                        assert bytes(bias) == layers["bias"].tobytes()
                        expected = zlib.crc32(layers["bias"].tobytes(), expected)
                    assert checksum == expected, (run_id, layer, step)
                    assert kernels[step].tobytes() == layers[layer][step].tobytes()


def test_checksums_round_trip_on_sqlite_and_postgresql(db_url):
    """CRC-32 is unsigned 32-bit: PostgreSQL's INTEGER would overflow on half of them (the column is BIGINT)."""
    logged = record_walks(db_url, runs=1)
    with Store(db_url) as store:
        series = store.kernel_series(1, "conv2")
        np.testing.assert_array_equal(series.kernels, np.stack(logged[1]["conv2"]))
        with store.engine.connect() as connection:
            checksums = [c for (c,) in connection.exec_driver_sql("SELECT checksum FROM kernel_snapshots")]
    assert max(checksums) > 2**31, "no checksum above 2^31: the column's range was not exercised"
    report = check_database(db_url)
    assert report.ok and [r.verified for r in report.runs] == [2 * STEPS]


def test_a_flipped_bit_in_the_last_snapshot_is_refused_by_every_reader(walks):
    db, _ = walks
    flip_bit(db, 1, "conv2", STEPS - 1)  # an XOR delta: its low byte planes are stored as they are
    assert encodings(db)[STEPS - 1] == "xor-zstd"
    damaged = "run 1, layer conv2: the snapshot at step 24 is damaged"
    for args in (
        ("filters", "1", "--layer", "conv2"),
        ("compare", "1", "2"),
        ("show", "1"),
        ("plot", "filters", "1", "--layer", "conv2", "--out", str(db.parent / "f.png")),
    ):
        one_line_error(run_cli(*args, "--db", str(db)), damaged, "`convexp db check 1`")
    assert not (db.parent / "f.png").exists()
    # run 2 is untouched and reads as before
    assert run_cli("filters", "2", "--layer", "conv2", "--db", str(db)).returncode == 0

    from starlette.testclient import TestClient

    from convexp.ui import create_app

    with TestClient(create_app(str(db))) as client:
        for query in ("step=last", "step=24", "step=20&count=5"):
            response = client.get(f"/api/runs/1/layers/conv2/kernels?{query}")
            assert response.status_code == 500 and damaged in response.json()["error"], (query, response.text)
        assert client.get("/api/runs/1/layers/conv2/kernels?step=19").status_code == 200  # another chain
        assert client.get("/api/runs/2/layers/conv2/kernels?step=last").status_code == 200

    checked = run_cli("db", "check", "--db", str(db))
    assert checked.returncode == 1
    assert "run 1 (walk/external): 2 layer(s), 50 snapshot(s): 1 damaged" in checked.stdout
    assert "  conv2 step 24: its kernel and bias do not match the checksum written with them\n" in checked.stdout
    assert "run 2 (walk/external): 2 layer(s), 50 snapshot(s): all match their checksums" in checked.stdout
    assert run_cli("db", "check", "2", "--db", str(db)).returncode == 0


def test_a_damaged_delta_names_the_steps_that_decode_from_it(walks):
    db, logged = walks
    flip_bit(db, 1, "conv2", 13)
    with Store(db) as store:
        with pytest.raises(DamagedSnapshotError, match=r"step 13 is damaged .*; step 15 decodes from it;") as raised:
            store.snapshot(1, "conv2", 15)
        assert (raised.value.run_id, raised.value.layer, raised.value.step) == (1, "conv2", 13)
        with pytest.raises(DamagedSnapshotError):
            store.kernel_series(1, "conv2")
        with pytest.raises(DamagedSnapshotError):
            store.filter_series(1, "conv2", 3)
        # the steps before it, and the chain after the next raw row, read bit for bit
        assert store.snapshot(1, "conv2", 12).kernel == logged[1]["conv2"][12].tobytes()
        assert [s.kernel for s in store.snapshots(1, "conv2", 20, 5)] == [k.tobytes() for k in logged[1]["conv2"][20:]]
    checked = run_cli("db", "check", "1", "--db", str(db))
    assert checked.returncode == 1
    assert (
        "  conv2 step 13: its kernel and bias do not match the checksum written with them; "
        "steps 14, 15, 16, 17, 18, 19 decode from it and cannot be read" in checked.stdout
    )
    assert "damaged: 1 snapshot(s) in 1 run(s), 6 more step(s) depending on them" in checked.stdout


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("base_step", 11, "is a delta of step 11, but follows step 12"),
        ("encoding", "'zstd'", "has an unknown encoding 'zstd'"),
        ("shape", "'[32, 16, 3]'", "its kernel holds 4608 values where its shape [32, 16, 3] has 1536"),
        ("kernel", "substr(kernel, 1, 100)", "does not decode"),
        ("bias", "substr(bias, 1, 8)", "its kernel and bias do not match the checksum written with them"),
    ],
)
def test_each_kind_of_damage_is_named(walks, column, value, reason):
    db, _ = walks
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute(f"UPDATE kernel_snapshots SET {column} = {value} WHERE run_id = 1 AND layer = 'conv2' AND step = 13")
        connection.commit()
    report = check_database(str(db))
    assert not report.ok
    (damage,) = report.runs[0].damaged
    assert (damage.layer, damage.step, damage.dependent_steps) == ("conv2", 13, [14, 15, 16, 17, 18, 19])
    assert reason in damage.reason
    one_line_error(run_cli("filters", "1", "--layer", "conv2", "--step", "16", "--db", str(db)), "at step 13 is damaged", reason)


def test_thinning_and_packing_stop_at_a_damaged_snapshot_and_change_nothing(walks):
    db, _ = walks
    flip_bit(db, 1, "conv2", 5)
    for args in (("db", "thin", "1", "--keep-every", "4"), ("db", "pack", "1")):
        one_line_error(run_cli(*args, "--db", str(db)), "run 1, layer conv2: the snapshot at step 5 is damaged")
    with contextlib.closing(sqlite3.connect(db)) as connection:  # nothing deleted or rewritten
        assert connection.execute("SELECT count(*) FROM kernel_snapshots WHERE run_id = 1").fetchone() == (2 * STEPS,)


def test_a_page_of_random_bytes_anywhere_in_the_file_is_reported(tmp_path):
    """Each whole page of the file overwritten with random bytes in turn (a bad sector, a torn copy):
    `convexp db check` reports every one, through SQLite's integrity check or the checksums."""
    db = tmp_path / "walks.db"
    record_walks(str(db))
    size = db.stat().st_size
    pages = size // PAGE_SIZE
    assert size % PAGE_SIZE == 0 and pages >= 8, (size, pages)
    rng = random.Random(0)
    for page in range(pages):
        copy = tmp_path / f"page-{page}.db"
        shutil.copyfile(db, copy)
        with open(copy, "r+b") as file:
            file.seek(page * PAGE_SIZE)
            file.write(rng.randbytes(PAGE_SIZE))
        try:
            report = check_database(str(copy))
        except convexp.errors.StoreError as exc:  # page 0 holds the header: the file is no database any more
            assert page == 0, (page, exc)
            continue
        assert not report.ok, f"page {page} of {pages} overwritten, yet no damage found"
        copy.unlink()
    shutil.copyfile(db, tmp_path / "middle.db")
    with open(tmp_path / "middle.db", "r+b") as file:
        file.seek((pages // 2) * PAGE_SIZE)
        file.write(random.Random(1).randbytes(PAGE_SIZE))
    checked = run_cli("db", "check", "--db", str(tmp_path / "middle.db"))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert "damaged" in checked.stdout or "integrity check found" in checked.stdout


def test_rows_from_before_checksums_read_as_before_and_db_check_fix_adds_them(tmp_path):
    """A database at schema 0006 (no checksum column) upgrades; its rows read as before, `db check`
    counts them unverified, and --fix gives each the CRC-32 of its decoded kernel."""
    from alembic import command

    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0006")
    engine.dispose()
    kernels = training_walk(4)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute(
            "INSERT INTO runs (id, experiment, backend, status, seed, dataset, kernel_initializer, bias_initializer, spec,"
            " convexp_version, backend_version, framework, framework_version, epochs_completed, steps_completed, started_at)"
            " VALUES (1, 'old', 'numpy', 'interrupted', 0, 'digits', 'glorot_uniform', 'zeros', '{}', '0', '0', 'numpy',"
            " '0', 0, 3, '2026-01-01 00:00:00')"
        )
        connection.executemany(
            "INSERT INTO kernel_snapshots (run_id, layer, step, epoch, shape, kernel, bias, encoding) "
            "VALUES (1, 'conv2', ?, 0, '[32, 16, 3, 3]', ?, NULL, 'raw')",
            [(step, kernels[step].tobytes()) for step in range(4)],
        )
        connection.commit()
    with Store(db) as store:  # migrates to the head
        np.testing.assert_array_equal(store.kernel_series(1, "conv2").kernels, np.stack(kernels))
    checked = run_cli("db", "check", "--db", str(db))
    assert checked.returncode == 0, checked.stderr
    assert "run 1 (old/numpy): 1 layer(s), 4 snapshot(s): 0 match their checksums, 4 recorded without one" in checked.stdout
    assert "no damage found; 4 snapshot(s) have no checksum (--fix adds them)" in checked.stdout
    fixed = run_cli("db", "check", "--fix", "--db", str(db))
    assert fixed.returncode == 0 and "added 4 checksum(s)" in fixed.stdout, fixed.stdout
    with contextlib.closing(sqlite3.connect(db)) as connection:
        stored = [c for (c,) in connection.execute("SELECT checksum FROM kernel_snapshots ORDER BY step")]
    assert stored == [zlib.crc32(k.tobytes()) for k in kernels]
    assert "all match their checksums" in run_cli("db", "check", "--db", str(db)).stdout


def test_packing_gives_rows_recorded_without_a_checksum_their_checksum(walks):
    db, logged = walks
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("UPDATE kernel_snapshots SET checksum = NULL WHERE run_id = 1 AND layer = 'conv1'")
        connection.commit()
    packed = run_cli("db", "pack", "1", "--db", str(db))
    assert packed.returncode == 0 and "added 25 checksum(s)" in packed.stdout, packed.stdout
    with contextlib.closing(sqlite3.connect(db)) as connection:
        stored = [
            c
            for (c,) in connection.execute(
                "SELECT checksum FROM kernel_snapshots WHERE run_id = 1 AND layer = 'conv1' ORDER BY step"
            )
        ]
    assert stored == [zlib.crc32(k.tobytes()) for k in logged[1]["conv1"]]
