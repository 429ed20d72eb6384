"""The classes of bad and odd input a probe found (issue 41), each closed by one rule and tested here with inputs
beyond the probe's own: names that are printable and addressable everywhere, JSON that is always JSON, reads of
outside data bounded before memory is allocated, web work bounded, the tracking API checking what it is handed,
db check --fix vouching only for what it verified, a damaged file named in one line."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import math
import os
import re
import sqlite3
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_DIGITS, one_line_error, run_cli, write_experiments

TINY = {**TINY_DIGITS, "max_steps": 3}


@pytest.fixture(scope="module")
def small_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("small") / "r.db"
    result = run_cli("run", str(write_experiments(db.parent / "e.yaml", {"tiny": TINY})), "--db", str(db))
    assert result.returncode == 0, result.stderr
    return db


# --- the terminal: what convexp prints cannot drive it ----------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "\x1b]0;pwned\x07",  # sets the window title
        "\x1b[2J\x1b[H",  # clears the screen
        "\x9b31m",  # a C1 control: CSI in one character
        "safe\u202eevil",  # right-to-left override: reorders what follows
        "\r overwritten",
    ],
)
def test_notes_and_names_are_printed_escaped_never_raw(small_db, tmp_path, hostile):
    db = tmp_path / "r.db"
    db.write_bytes(small_db.read_bytes())
    raw = [c for c in hostile if not c.isprintable()]
    for command in (("note", "1", f"before {hostile} after"), ("show", "1"), ("runs",), ("runs", "-f", "csv")):
        result = run_cli(*command, "--db", str(db))
        assert result.returncode == 0, result.stderr
        assert not any(c in result.stdout + result.stderr for c in raw), repr(result.stdout)
        on_terminal = on_a_terminal("convexp", *command[:1], *(["1"] if command[0] == "show" else []), "--db", str(db))
        assert not any(c in on_terminal for c in raw), repr(on_terminal)
        if command[0] == "show" and "\r" not in hostile:  # show breaks notes at \r as at \n: lines, not a return
            assert hostile.encode("unicode_escape").decode() in on_terminal, repr(on_terminal)
    assert json.loads(run_cli("show", "1", "-f", "json", "--db", str(db)).stdout)["notes"] == f"before {hostile} after"


def on_a_terminal(*command: str) -> str:
    """What a command writes to a real terminal (a pseudo-terminal: click and rich print differently to one)."""
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "convexp", *command[1:]], stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "200"}
    )
    os.close(follower)
    out = b""
    with contextlib.suppress(OSError):  # the terminal reads EIO once the command has exited
        while chunk := os.read(leader, 1 << 16):
            out += chunk
    process.wait(timeout=600)
    os.close(leader)
    text = out.decode("utf-8", "replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's own colours


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_printable_leaves_no_character_that_could_drive_a_terminal(text):
    from convexp.cli.output import printable

    shown = printable(text)
    assert all(c.isprintable() or c in "\n\t" for c in shown)
    assert shown == text or any(not c.isprintable() and c not in "\n\t" for c in text)  # only what must change changes


def test_a_confirmation_cuts_a_long_note_short_and_show_prints_it_whole(small_db, tmp_path):
    db = tmp_path / "r.db"
    db.write_bytes(small_db.read_bytes())
    note = "x" * 1_000_000
    result = run_cli("note", "1", "-", "--db", str(db), input=note)
    assert result.returncode == 0 and len(result.stdout) < 400 and "(1,000,000 characters)" in result.stdout
    assert note in run_cli("show", "1", "--db", str(db)).stdout


def test_notes_that_are_not_utf8_are_refused_in_one_line(small_db, tmp_path):
    db = tmp_path / "r.db"
    db.write_bytes(small_db.read_bytes())
    before = db.read_bytes()
    code = "import sys; from convexp.cli import main; sys.argv = ['convexp', 'note', '1', b'caf\\xe9'.decode('utf-8', 'surrogateescape'), '--db', sys.argv[1]]; main()"
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=300)
    one_line_error(result, "not UTF-8")
    assert db.read_bytes() == before


# --- JSON is JSON ---------------------------------------------------------------------------------------------


def test_every_json_document_holds_no_nan_and_says_which_number_was_not_finite():
    from convexp.cells import NON_FINITE_FIELD, json_text

    value = {"lr": float("nan"), "top": np.float32("inf"), "low": -math.inf, "kept": [1.0, float("nan")], "n": np.int64(3)}
    text = json_text(value)
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}"))
    assert parsed == {
        "lr": None,
        "top": None,
        "low": None,
        "kept": [1.0, None],
        "n": 3,
        NON_FINITE_FIELD: {"lr": "nan", "top": "inf", "low": "-inf"},
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_text_is_always_strict_json(value):
    from convexp.cells import json_text

    json.loads(json_text(value), parse_constant=lambda c: pytest.fail(f"{c} in {value!r}"))


def test_a_tracked_config_holding_nan_leaves_the_runs_table_and_json_outputs_valid(tmp_path):
    from starlette.testclient import TestClient

    import convexp
    from convexp.ui import create_app

    db = tmp_path / "t.db"
    with convexp.track("loop", db, config={"lr": float("nan"), "decay": float("inf")}) as run:
        run.log_metrics({"loss": 1.0}, step=1)
    with TestClient(create_app(str(db))) as client:
        for path in ("/api/runs", "/api/runs/1", "/api/experiments/loop"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            json.loads(response.text, parse_constant=lambda c, path=path: pytest.fail(f"{c} in {path}"))
        assert client.get("/experiments/loop").status_code == 200  # a config that does not vary: one group
    for command in (("runs", "-f", "json"), ("show", "1", "-f", "json")):
        result = run_cli(*command, "--db", str(db))
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout, parse_constant=lambda c, command=command: pytest.fail(f"{c} in {command}"))


# --- names addressable everywhere ------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["block1/conv", "a/b/c", "ünï cödé ✓", "x.y;z"])
def test_a_layer_of_any_name_is_reachable_in_every_route_and_downloads_under_its_name(tmp_path, layer):
    from urllib.parse import quote, unquote

    from starlette.testclient import TestClient

    import convexp
    from convexp.ui import create_app

    db = tmp_path / "t.db"
    kernels = np.random.default_rng(0).standard_normal((3, 4, 1, 3, 3)).astype(np.float32)
    with convexp.track("team/a", db) as run:
        for step in range(3):
            run.log_kernels({layer: kernels[step]}, step=step)
    base = f"/api/runs/1/layers/{quote(layer, safe='')}"
    with TestClient(create_app(str(db))) as client:
        for path in ("/steps", "/kernels?step=0", "/filters/0", "/distribution", "/histogram", "/analysis"):
            assert client.get(base + path).status_code == 200, (path, client.get(base + path).text)
        gif = client.get(f"/runs/1/layers/{quote(layer, safe='')}/filters.gif?frames=2")
        assert gif.status_code == 200, gif.text
        disposition = gif.headers["content-disposition"]
        disposition.encode("latin-1")  # a header carries Latin-1 only
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == f"run-1-{layer}-steps-first-last.gif"
        assert client.get("/experiments/team/a").status_code == 200
        assert client.get("/api/experiments/team/a").json()["experiment"] == "team/a"


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "\x1b[31m", " ", "x" * 101])
def test_a_layer_name_that_cannot_be_shown_is_refused_when_validated(tmp_path, name):
    body = {**TINY, "layers": [{**TINY["layers"][0], "name": name}, *TINY["layers"][1:]]}
    one_line_error(run_cli("validate", str(write_experiments(tmp_path / "e.yaml", {"x": body}))), "layer name")


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
    import convexp.free_memory
    from convexp.datasets.arrays import load
    from convexp.errors import DatasetError

    name = _npz(tmp_path / "d.npz")
    monkeypatch.setattr(convexp.free_memory, "available_memory", lambda: 1000)
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
    from convexp.datasets.download import fetch_file
    from convexp.datasets.idx import MNIST
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
    from convexp.datasets.download import fetch_file

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


# --- web work bounded -----------------------------------------------------------------------------------------


def test_a_gif_of_a_wide_layer_draws_fewer_frames_and_refuses_more_naming_the_bound(tmp_path):
    from starlette.testclient import TestClient

    import convexp
    from convexp.ui import create_app
    from convexp.ui.data import MAX_GIF_CELLS

    db = tmp_path / "t.db"
    with convexp.track("wide", db) as run:
        for step in range(3):
            run.log_kernels(
                {"conv": np.full((700, 1, 3, 3), step, np.float32), "narrow": np.zeros((256, 1, 3, 3), np.float32)}, step=step
            )
    with TestClient(create_app(str(db))) as client:
        refused = client.get("/runs/1/layers/conv/filters.gif")
        assert refused.status_code == 400 and f"at most {MAX_GIF_CELLS} filter cells" in refused.text
        too_many = client.get("/runs/1/layers/narrow/filters.gif?frames=6")
        assert too_many.status_code == 400 and "frames must be from 2 to 5" in too_many.text
        points = client.get("/api/runs/1/layers/narrow/filters/0?points=100000")
        assert points.status_code == 400 and "points must be from 2 to" in points.json()["error"]


def test_pictures_of_a_layer_without_filters_are_refused_naming_those_with_them(tmp_path):
    from starlette.testclient import TestClient

    from convexp.ui import create_app

    body = {**TINY, "layers": [{"type": "conv", "filters": 4, "kernel_size": 3}, {"type": "batch_norm"}, *TINY["layers"][1:]]}
    db = tmp_path / "r.db"
    assert run_cli("run", str(write_experiments(tmp_path / "e.yaml", {"bn": body})), "--db", str(db)).returncode == 0
    for command in (
        ("plot", "filters", "1", "--layer", "batch_norm1", "--out", str(tmp_path / "f.png")),
        ("plot", "evolution", "1", "--layer", "batch_norm1", "--out", str(tmp_path / "f.gif")),
        ("filters", "1", "--layer", "batch_norm1"),
    ):
        one_line_error(run_cli(*command, "--db", str(db)), "batch_norm1 holds no filters", "layers with filters: conv1")
    with TestClient(create_app(str(db))) as client:
        response = client.get("/runs/1/layers/batch_norm1/filters.gif")
        assert response.status_code == 400 and "holds no filters" in response.text


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
    from tests.test_checksums import STEPS, flip_bit, record_walks

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
    from tests.test_checksums import PAGE_SIZE, record_walks

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
