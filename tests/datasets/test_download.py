"""`convexp data fetch mnist` against HTTP servers on 127.0.0.1 that the tests start: good, flaky, corrupt, missing."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from convexp.datasets import mnist
from convexp.datasets.idx import MNIST, fetch
from convexp.errors import DatasetError
from tests.conftest import run_cli


def serve(folder: Path, *, cut_first_transfer: bool = False, corrupt: bool = False):
    """An HTTP server for the files in ``folder``, with Range support; it can drop the first transfer
    of each file half-way, or flip a byte of everything it sends."""
    state = {"cut": set(), "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = folder / self.path.lstrip("/").split("/")[-1]
            state["requests"].append((self.path, self.headers.get("Range")))
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            if corrupt:
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if cut_first_transfer and path.name not in state["cut"]:
                state["cut"].add(path.name)
                self.wfile.write(body[: len(body) // 2])  # then hang up
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/mnist/", state


@pytest.fixture
def gz_folder(mnist_dir, tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    for idx in mnist.FILES.values():
        shutil.copy(mnist_dir / f"{idx.filename}.gz", folder)
    return folder


def test_fetch_resumes_broken_transfers_and_verifies(gz_folder, tmp_path):
    server, url, state = serve(gz_folder, cut_first_transfer=True)
    try:
        written = fetch(MNIST, [url], tmp_path / "cache", attempts=3, timeout=10)
    finally:
        server.shutdown()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(p.name for p in written.values())
    assert len(mnist.load(tmp_path / "cache").train_labels) == 60000
    resumed = [r for _, r in state["requests"] if r]
    assert len(resumed) == 4  # each file was cut once and resumed with a Range request


def test_a_corrupt_mirror_is_skipped_for_a_good_one(gz_folder, tmp_path):
    bad, bad_url, _ = serve(gz_folder, corrupt=True)
    good, good_url, _ = serve(gz_folder)
    try:
        fetch(MNIST, [bad_url, good_url], tmp_path / "cache", attempts=1, timeout=10)
    finally:
        bad.shutdown()
        good.shutdown()
    mnist.locate(tmp_path / "cache")


def test_failed_download_leaves_nothing_half_written(gz_folder, tmp_path):
    bad, bad_url, _ = serve(gz_folder, corrupt=True)
    empty, empty_url, _ = serve(gz_folder / "nothing")  # a mirror without the files
    try:
        with pytest.raises(
            DatasetError, match=r"could not download train-images-idx3-ubyte.gz: .*cannot be read as gzip.*; .*HTTP 404"
        ):
            fetch(MNIST, [bad_url, empty_url], tmp_path / "cache", attempts=1, timeout=10)
    finally:
        bad.shutdown()
        empty.shutdown()
    assert list((tmp_path / "cache").iterdir()) == []


def test_fetch_command_with_mirrors(gz_folder, tmp_path):
    server, url, _ = serve(gz_folder)
    try:
        result = run_cli(
            "data",
            "fetch",
            "mnist",
            "--mirror",
            "http://127.0.0.1:1/nowhere/",
            "--mirror",
            url,
            "--attempts",
            "1",
            env={"XDG_CACHE_HOME": str(tmp_path)},
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "MNIST is ready in" in result.stdout
    assert len(list((tmp_path / "convexp" / "mnist").glob("*.gz"))) == 4
    again = run_cli(
        "data",
        "fetch",
        "mnist",
        "--mirror",
        "http://127.0.0.1:1/nowhere/",
        "--attempts",
        "1",
        env={"XDG_CACHE_HOME": str(tmp_path)},
    )
    assert again.returncode == 0  # already there and verified: nothing to download
