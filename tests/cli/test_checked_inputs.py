"""What convexp reads is checked before it is trusted (issue 41's classes, each closed by one rule): experiments
that cannot be honoured, arrays and IDX files bounded by the size they declare, downloads stopped at the file's
size, the tracking API's arguments, db check --fix vouching only for what it verified, a damaged file in one line."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import os
import sqlite3
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_DIGITS, one_line_error, run_cli, write_experiments

TINY = {**TINY_DIGITS, "max_steps": 3}


# --- validation lets nothing impossible through -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"augmentation": {"shift": 8}}, "augmentation.shift: 8 pixels"),
        ({"augmentation": {"shift": 10**9}}, "at most 7"),
        (
            {"optimizer": {"name": "sgd", "schedule": {"warmup_steps": 4}}},
            "warmup_steps: 4 updates of warmup, but the run makes 3",
        ),
    ],
)
def test_settings_the_run_cannot_honour_are_refused_before_it_starts(tmp_path, change, phrase):
    db = tmp_path / "r.db"
    result = run_cli("run", str(write_experiments(tmp_path / "e.yaml", {"x": {**TINY, **change}})), "--db", str(db))
    one_line_error(result, phrase)
    assert not db.exists()


def test_repeated_run_ids_are_one_run(small_db, tmp_path):
    db = tmp_path / "r.db"
    db.write_bytes(small_db.read_bytes())
    once = run_cli("db", "thin", "1", "--keep-every", "2", "--dry-run", "--db", str(db)).stdout
    twice = run_cli("db", "thin", "1", "1", "1", "--keep-every", "2", "--dry-run", "--db", str(db)).stdout
    assert once == twice and twice.count("run 1:") == 1


# --- your own arrays: checked in their own type and size ------------------------------------------------------


def _npz(path: Path, **arrays) -> str:
    images = np.random.default_rng(0).integers(0, 255, (20, 8, 8), dtype=np.uint8)
    base = {"train_images": images, "train_labels": np.arange(20) % 3, "test_images": images[:4], "test_labels": np.arange(4) % 3}
    np.savez_compressed(path, **{**base, **arrays})
    return "npz:" + str(path)


@pytest.mark.parametrize(
    ("arrays", "phrase"),
    [
        ({"train_labels": np.array([2**64 - 1] + [1] * 19, np.uint64)}, "holds the label 18446744073709551615"),
        ({"train_labels": np.array([2**40] + [1] * 19, np.int64)}, "labels are below"),
        ({"test_images": np.zeros((0, 8, 8), np.uint8), "test_labels": np.zeros(0, np.int64)}, "'test_images' holds no images"),
    ],
)
def test_arrays_a_run_would_misread_are_refused(tmp_path, arrays, phrase):
    from convexp.datasets.arrays import load
    from convexp.errors import DatasetError

    with pytest.raises(DatasetError, match=phrase):
        load(_npz(tmp_path / "d.npz", **arrays))


def test_a_npy_file_is_refused_with_what_convexp_reads(tmp_path):
    from convexp.datasets.arrays import load
    from convexp.errors import DatasetError

    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"x\.npy: a \.npy file of one array; convexp reads a \.npz"):
        load("npz:" + str(tmp_path / "x.npy"))


def test_arrays_are_sized_from_their_headers_before_any_is_read(tmp_path, monkeypatch):
    """A header that declares more than its zip entry holds, and arrays bigger than the memory there is, are refused
    without reading them (a 1 MB file of zeros may hold gigabytes)."""
    import convexp.machine
    from convexp.datasets.arrays import load
    from convexp.errors import DatasetError

    name = _npz(tmp_path / "d.npz")
    monkeypatch.setattr(convexp.machine, "available_memory", lambda: 1000)
    with pytest.raises(DatasetError, match="need about .* GiB to read; this machine has"):
        load(name)
    monkeypatch.undo()
    lying = tmp_path / "lying.npz"
    with zipfile.ZipFile(tmp_path / "d.npz") as source, zipfile.ZipFile(lying, "w") as out:
        for member in source.namelist():
            data = source.read(member)
            if member == "train_images.npy":  # the header claims a billion images of its 20
                data = data.replace(b"(20, 8, 8)", b"(1000000000, 8, 8)".ljust(len(b"(20, 8, 8)"))[: len(data)], 1)
                header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.uint8))
                header["shape"] = (10**9, 8, 8)
                buffer = __import__("io").BytesIO()
                np.lib.format.write_array_header_1_0(buffer, header)
                data = buffer.getvalue() + np.zeros((20, 8, 8), np.uint8).tobytes()
            out.writestr(member, data)
    with pytest.raises(DatasetError, match="'train_images' declares \\[1000000000, 8, 8\\] uint8, more than its"):
        load("npz:" + str(lying))


# --- IDX files and downloads: bounded by the size the file has --------------------------------------------------


def test_an_idx_file_larger_than_the_published_one_is_refused_before_it_is_read(tmp_path):
    from convexp.datasets.idx import MNIST
    from convexp.errors import DatasetError

    idx = MNIST.files["train_labels"]
    sparse = tmp_path / (idx.filename + ".gz")
    with open(sparse, "wb") as file:
        file.truncate(3 * 2**30)  # 3 GB that take no disk: read whole, they would take memory
    with pytest.raises(DatasetError, match="more than the .* the file it stands for can have"):
        MNIST.read_verified("train_labels", sparse)


def test_a_gzip_bomb_is_inflated_no_further_than_the_file_it_stands_for(tmp_path):
    from convexp.datasets.idx import MNIST
    from convexp.errors import DatasetError

    idx = MNIST.files["train_labels"]
    bomb = tmp_path / (idx.filename + ".gz")
    with gzip.open(bomb, "wb", compresslevel=9) as file:
        chunk = bytes(2**20)
        for _ in range(20):  # 20 MB of zeros in ~20 kB
            file.write(chunk)
    assert bomb.stat().st_size < idx.most_stored_bytes
    with pytest.raises(DatasetError, match="decompresses to more than the 60,008 bytes"):
        MNIST.verify("train_labels", bomb, bomb.read_bytes())


class _Endless(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # a mirror that streams for ever, announcing no length
        self.send_response(200)
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(100_000):  # bounded, as any test's loop is: 6.5 GB at most
                self.wfile.write(bytes(1 << 16))

    def log_message(self, *args):
        pass


def test_a_download_stops_at_the_files_size_and_leaves_no_partial_file(tmp_path):
    from convexp.datasets.idx import MNIST, fetch_file
    from convexp.errors import DatasetError

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with pytest.raises(DatasetError, match="sent more than the .* bytes the file has"):
            fetch_file("train_labels", [url], tmp_path, attempts=1, timeout=30, wait=0)
    finally:
        server.shutdown()
        server.server_close()
    assert os.listdir(tmp_path) == []
    assert MNIST.files["train_labels"].most_stored_bytes < 70_000


def test_a_download_stopped_by_ctrl_c_leaves_no_partial_file(tmp_path):
    from convexp.datasets.idx import fetch_file

    def interrupt(name, done, total):
        if done > 1 << 17:
            raise KeyboardInterrupt

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            fetch_file("train_images", [f"http://127.0.0.1:{server.server_address[1]}/"], tmp_path, progress=interrupt, wait=0)
    finally:
        server.shutdown()
        server.server_close()
    assert os.listdir(tmp_path) == []


# --- the tracking API checks what it is handed ----------------------------------------------------------------


def test_a_torch_layer_swapped_or_replaced_between_steps_is_refused_or_followed(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn

    import convexp
    from tests.conftest import stored_kernels

    class Net(nn.Module):  # a user's own subclass
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
            self.head = nn.Linear(4 * 6 * 6, 10)

    model = Net()
    db = tmp_path / "t.db"
    with convexp.track("swap", db) as run:
        run.log_kernels(model, step=0)
        model.features[0] = nn.Conv2d(1, 4, 3)  # replaced: what is there now is read
        with torch.no_grad():
            model.features[0].weight.fill_(7.0)
        run.log_kernels(model, step=1)
        model.features[0].weight = nn.Parameter(torch.zeros(5, 1, 3, 3))  # another shape: refused
        with pytest.raises(convexp.errors.ModelError, match=r"layer features.0: kernel shape \[5, 1, 3, 3\]"):
            run.log_kernels(model, step=2)
        model.features[0] = nn.Identity()
        with pytest.raises(convexp.errors.ModelError, match="features.0 is now a Identity"):
            run.log_kernels(model, step=3)
    stored = stored_kernels(db, "features.0")
    assert sorted(stored) == [0, 1] and (stored[1] == 7.0).all()
    assert run_cli("db", "check", "--db", str(db)).returncode == 0


@pytest.mark.parametrize(
    ("call", "phrase"),
    [
        (lambda run: run.log_metrics({"a": 1.0}, step=2**63), "step must be a whole number from 0 to"),
        (lambda run: run.log_metrics({"a": 1.0}, step=True), "step must be"),
        (lambda run: run.log_metrics({"a": 1.0}, step=np.uint64(2**64 - 1)), "step must be"),
        (lambda run: run.log_metrics({"a": 1.0}, step=2, epoch="one"), "epoch must be"),
        (lambda run: run.log_metrics({"a": 1.0}, step=2, epoch=-1), "epoch must be"),
    ],
)
def test_a_step_or_epoch_out_of_type_or_range_is_refused_and_the_steps_before_it_are_kept(tmp_path, call, phrase):
    import convexp

    db = tmp_path / "t.db"
    run = convexp.track("steps", db)
    run.log_metrics({"a": 1.0}, step=1)
    with pytest.raises(ValueError, match=phrase):
        call(run)
    run.finish()
    with contextlib.closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT step, value FROM metrics").fetchall() == [(1, 1.0)]
        assert connection.execute("SELECT status FROM runs").fetchone() == ("finished",)


@pytest.mark.parametrize(
    ("labels", "phrase"),
    [
        ({"tags": "baseline"}, "tags are a list of strings, not the string 'baseline'"),
        ({"tags": b"raw"}, "tags are a list of strings"),
        ({"notes": ["a", "b"]}, "notes are a string, not list"),
        ({"notes": "caf\udce9"}, "not UTF-8"),
    ],
)
def test_labels_of_the_wrong_type_are_refused_before_the_run_is_made(tmp_path, labels, phrase):
    import convexp

    db = tmp_path / "t.db"
    with pytest.raises(ValueError, match=phrase):
        convexp.track("labels", db, **labels)
    assert not db.exists()


@pytest.mark.parametrize("name", ["a\nb", "\x1b]0;t\x07", "x" * 101])
def test_a_logged_layer_name_that_cannot_be_shown_is_refused_before_it_is_buffered(tmp_path, name):
    import convexp

    db = tmp_path / "t.db"
    with convexp.track("names", db) as run:
        run.log_kernels({"fine": np.zeros((2, 1, 3, 3), np.float32)}, step=0)
        with pytest.raises(ValueError, match="layer name"):
            run.log_kernels({name: np.zeros((2, 1, 3, 3), np.float32)}, step=1)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT DISTINCT layer FROM kernel_snapshots").fetchall() == [("fine",)]


# --- db check --fix vouches only for what it verified --------------------------------------------------------


@pytest.mark.parametrize("command", [("db", "check", "--fix"), ("db", "pack", "1"), ("db", "thin", "1", "--keep-every", "1")])
def test_no_command_gives_a_checksum_to_a_delta_whose_base_no_checksum_verified(tmp_path, command):
    from tests.store.test_checksums import STEPS, flip_bit, record_walks

    db = tmp_path / "walks.db"
    record_walks(str(db), runs=1)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("UPDATE kernel_snapshots SET checksum = NULL WHERE layer = 'conv2'")
        connection.commit()
    flip_bit(db, 1, "conv2", 5)  # an XOR delta: damage nothing can see without a checksum
    run_cli(*command, "--db", str(db))
    with contextlib.closing(sqlite3.connect(db)) as connection:
        given = dict(connection.execute("SELECT step, checksum FROM kernel_snapshots WHERE layer = 'conv2'").fetchall())
        encodings = dict(connection.execute("SELECT step, encoding FROM kernel_snapshots WHERE layer = 'conv2'").fetchall())
    assert len(given) == STEPS
    for step, checksum in given.items():
        assert (checksum is not None) == (encodings[step] == "raw"), (step, encodings[step], checksum)


# --- a damaged database file ------------------------------------------------------------------------------------


def test_a_damaged_file_is_one_line_naming_it_and_db_check(tmp_path):
    from tests.store.test_checksums import PAGE_SIZE, record_walks

    db = tmp_path / "walks.db"
    record_walks(str(db), runs=2)
    pages = db.stat().st_size // PAGE_SIZE
    rng = np.random.default_rng(3)
    with open(db, "r+b") as file:
        for page in range(2, pages - 1):
            file.seek(page * PAGE_SIZE)
            file.write(rng.bytes(PAGE_SIZE))
    for command in (("runs",), ("show", "1"), ("filters", "1", "--layer", "conv2"), ("compare", "1", "2")):
        line = one_line_error(run_cli(*command, "--db", str(db)), str(db), "convexp db check")
        assert "SQL" not in line and "sqlalche" not in line, line
