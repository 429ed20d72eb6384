"""convexp ui without a browser: its JSON and bytes against the database read directly, on SQLite and PostgreSQL;
bad requests; the server as a user starts it; and the parameter table the run page shares with show and validate.

The pages themselves are driven in Chromium in test_ui_browser.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import REPO, TINY_DIGITS, decode_kernels, run_cli, sha256, write_experiments

pytest.importorskip("starlette", reason="convexp ui needs the ui extra: pip install 'convexp[ui]'")
pytest.importorskip("httpx", reason="the app is tested through starlette's TestClient, which needs httpx")

EVERY_STEP = {**TINY_DIGITS, "seed": [0, 1], "snapshots": {"every": 1}, "epochs": 2}


def record_two_seeds(tmp_path: Path, db: str) -> None:
    """Two finished every-step runs of a small digits network (seeds 0 and 1) into ``db``, through the Python API."""
    from convexp.experiments.runner import execute, prepare_runs
    from convexp.store import Store

    path = write_experiments(tmp_path / "experiments.yaml", {"tiny": EVERY_STEP})
    with Store(db) as store:
        outcomes = execute(prepare_runs(path, ["tiny"]), store)
    assert [o.status for o in outcomes] == ["finished", "finished"]


def raw_kernel(url: str, run_id: int, layer: str, step: int) -> np.ndarray:
    """A stored kernel read with plain SQL, not through convexp."""
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT step, encoding, kernel, shape FROM kernel_snapshots"
                " WHERE run_id = :r AND layer = :l AND step <= :s ORDER BY step"
            ),
            {"r": run_id, "l": layer, "s": step},
        ).all()
    engine.dispose()
    return decode_kernels((r.step, r.encoding, r.kernel) for r in rows)[step].reshape(json.loads(rows[0].shape))


@pytest.fixture
def client_for():
    from starlette.testclient import TestClient

    from convexp.ui import create_app

    clients = []

    def make(db: str) -> TestClient:
        client = TestClient(create_app(db))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.app.state.store.close()


def test_the_app_hands_out_what_the_database_holds_on_sqlite_and_postgresql(db_url, tmp_path, client_for):
    record_two_seeds(tmp_path, db_url)
    client = client_for(db_url)

    runs = client.get("/api/runs").json()["runs"]
    assert [(r["id"], r["status"], r["steps"], r["epochs"], r["epochs_planned"]) for r in runs] == [
        (1, "finished", 46, 2, 2),
        (2, "finished", 46, 2, 2),
    ]
    page = client.get("/")
    assert page.status_code == 200 and "<h1>Runs</h1>" in page.text

    steps = client.get("/api/runs/1/layers/conv1/steps").json()
    assert steps["steps"] == list(range(47)) and steps["shape"] == [4, 1, 3, 3]
    # the bytes of one step, and of several for playing, are the stored float32 bytes
    one = client.get("/api/runs/1/layers/conv1/kernels?step=17")
    assert one.headers["x-convexp-shape"] == "4,1,3,3" and one.headers["x-convexp-steps"] == "17"
    assert one.content == raw_kernel(db_url, 1, "conv1", 17).tobytes()
    chunk = client.get("/api/runs/1/layers/conv1/kernels?step=40&count=64")
    assert chunk.headers["x-convexp-steps"] == ",".join(map(str, range(40, 47)))
    assert chunk.content == b"".join(raw_kernel(db_url, 1, "conv1", s).tobytes() for s in range(40, 47))
    last = client.get("/api/runs/2/layers/conv1/kernels?step=last")
    assert last.headers["x-convexp-steps"] == "46" and last.content == raw_kernel(db_url, 2, "conv1", 46).tobytes()

    # one filter over time: its weights at every step, and its drift from step 0 by the formula
    trajectory = client.get("/api/runs/1/layers/conv1/filters/2").json()
    stored = np.stack([raw_kernel(db_url, 1, "conv1", s)[2] for s in range(47)])
    assert trajectory["steps"] == list(range(47))
    assert np.array_equal(np.asarray(trajectory["values"], dtype=np.float32), stored.reshape(47, -1))
    flat = stored.reshape(47, -1).astype(np.float64)
    expected_drift = np.linalg.norm(flat - flat[0], axis=1) / np.linalg.norm(flat[0])
    np.testing.assert_allclose(trajectory["drift"], expected_drift, rtol=1e-12)
    thinned = client.get("/api/runs/1/layers/conv1/filters/2?points=5").json()
    assert thinned["steps"] == [0, 12, 23, 34, 46]

    # metrics, whole and from a step on (what a live page polls)
    metrics = client.get("/api/runs/1/metrics").json()
    engine = create_engine(db_url)
    with engine.connect() as connection:
        losses = connection.execute(
            text("SELECT step, value FROM metrics WHERE run_id = 1 AND name = 'train_loss' ORDER BY step")
        ).all()
    engine.dispose()
    assert metrics["metrics"]["train_loss"]["steps"] == [s for s, _ in losses]
    assert metrics["metrics"]["train_loss"]["values"] == [v for _, v in losses]
    later = client.get("/api/runs/1/metrics?after=40").json()
    assert later["metrics"]["train_loss"]["steps"] == list(range(41, 47)) and later["last_step"] == 46

    # the run page's data is `convexp show --format json` plus the parameter table
    details = client.get("/api/runs/1").json()
    assert [p["parameters"] for p in details["parameters"]] == [4 * 9 + 4, 0, 0, 4 * 3 * 3 * 10 + 10]
    assert "4 filters of 3x3x1 = 36 weights + 4 biases" in details["filters_sentence"]
    assert client.get("/runs/1").status_code == 200

    # the compare page's order is convexp compare's matching
    from convexp.analysis.compare import compare_runs, comparison_dict
    from convexp.store import Store

    with Store(db_url) as store:
        expected = comparison_dict(compare_runs(store, store.list_runs()))
    compared = client.get("/api/compare?runs=1,2").json()
    assert compared["layers"][0]["matches"] == expected["layers"][0]["matches"]
    assert client.get("/compare?runs=1,2").status_code == 200


@pytest.fixture(scope="module")
def two_runs_db(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ui")
    db = folder / "ui.db"
    record_two_seeds(folder, str(db))
    return db


@pytest.mark.parametrize(
    "path, status, fragment",
    [
        ("/api/runs/99", 404, "no run with id 99"),
        ("/api/runs/99999999999999999999999999", 404, "no run 99999999999999999999999999"),  # beyond 64 bits: was a 500
        ("/api/runs/1/metrics?after=99999999999999999999", 400, "after must be a whole number the database can hold"),
        ("/api/runs?ids=99999999999999999999&after=0", 400, "ids must be run ids"),
        ("/api/runs/1/layers/conv1/kernels?step=99999999999999999999", 400, "step must be a whole number"),
        ("/api/compare?runs=1,99999999999999999999", 404, "no run 99999999999999999999"),
        ("/api/runs/abc/metrics", 404, "no run 'abc'"),
        ("/api/runs/1/layers/conv7/steps", 404, "no snapshots of a layer 'conv7' (layers with snapshots: conv1)"),
        ("/api/runs/1/layers/conv7/kernels?step=1", 404, "no snapshots of a layer 'conv7' (layers with snapshots: conv1)"),
        ("/api/runs/1/layers/conv7/analysis?step=1", 404, "no snapshots of a layer 'conv7' (layers with snapshots: conv1)"),
        ("/api/runs/1/layers/conv1/kernels?step=5000", 404, "no snapshot of conv1 at step 5000"),
        ("/api/runs/1/layers/conv1/kernels?step=-3", 404, "no snapshot of conv1 at step -3"),
        ("/api/runs/1/layers/conv1/kernels?step=ten", 400, "step must be a whole number, 'first' or 'last', not 'ten'"),
        ("/api/runs/1/layers/conv1/kernels?step=3&count=0", 400, "count must be from 1 to 256"),
        ("/api/runs/1/layers/conv1/kernels?step=3&count=x", 400, "count must be a whole number, not 'x'"),
        ("/api/runs/1/layers/conv1/filters/4", 404, "has filters 0 to 3, not 4"),
        ("/api/runs/1/layers/conv1/filters/one", 404, "no filter 'one'"),
        ("/api/runs/1/metrics?after=%ZZ", 400, "after must be a whole number"),
        ("/api/runs?ids=1,x&after=0", 400, "ids must be run ids"),
        ("/api/runs/1/layers/conv1/patches?top=0", 400, "top must be between 1 and 25, not 0"),
        ("/api/runs/1/layers/conv7/patches", 404, "no snapshots of a layer 'conv7' (layers with snapshots: conv1)"),
        ("/api/runs/1/layers/conv1/patches?step=4000", 404, "no snapshot of conv1 at step 4000"),
        ("/api/compare?runs=1", 400, "compare needs two or more runs"),
        ("/api/compare?runs=1,77", 404, "no run with id 77"),
        ("/api/compare?runs=1,2&step=900", 404, "no snapshot of conv1 at step 900"),
        ("/api/query?sql=DELETE%20FROM%20runs", 400, "read-only, and the statement would delete runs"),
        ("/api/query?sql=SELEC%20nonsense", 400, "query failed"),
        ("/api/nothing-here", 404, "no such page: /api/nothing-here"),
    ],
)
def test_bad_requests_get_a_clear_json_error_with_the_right_status(two_runs_db, client_for, path, status, fragment):
    response = client_for(str(two_runs_db)).get(path)
    assert response.status_code == status
    body = response.json()
    assert fragment in body["error"] and body["status"] == status and "Traceback" not in response.text


@pytest.mark.parametrize(
    "path, status, fragment",
    [
        ("/runs/99", 404, "no run with id 99"),
        ("/runs/99999999999999999999999999", 404, "no run 99999999999999999999999999"),
        ("/runs/1.5", 404, "no run &#39;1.5&#39;"),
        (
            "/compare?runs=1,2&step=soon",
            400,
            "step must be a whole number, &#39;first&#39; or &#39;last&#39;, not &#39;soon&#39;",
        ),
        ("/no/such/page", 404, "no such page"),
    ],
)
def test_bad_page_requests_get_an_error_page(two_runs_db, client_for, path, status, fragment):
    response = client_for(str(two_runs_db)).get(path)
    assert response.status_code == status and response.headers["content-type"].startswith("text/html")
    assert 'id="error-message"' in response.text and fragment in response.text and "Traceback" not in response.text


def test_the_query_page_refuses_writes_and_the_database_is_unchanged(two_runs_db, client_for):
    before = sha256(two_runs_db)
    client = client_for(str(two_runs_db))
    for statement in (
        "DELETE FROM metrics",
        "UPDATE runs SET status = 'failed'",
        "DROP TABLE runs",
        "INSERT INTO runs (id) VALUES (9)",
        "ATTACH DATABASE 'x.db' AS x",
        "PRAGMA journal_mode=DELETE",
        "SELECT 1; DELETE FROM runs",
    ):
        page = client.get("/query", params={"sql": statement})
        assert page.status_code == 400 and 'id="query-error"' in page.text, statement
    ok = client.get("/query", params={"sql": "SELECT id, status FROM runs ORDER BY id"})
    assert ok.status_code == 200 and "<td>finished</td>" in ok.text
    csv = client.get("/query.csv", params={"sql": "SELECT id, layer, step, kernel FROM kernel_snapshots WHERE step = 0"})
    assert csv.text.splitlines() == ["id,layer,step,kernel", "1,conv1,0,<144 bytes>", "48,conv1,0,<144 bytes>"]
    assert sha256(two_runs_db) == before


def test_nothing_the_ui_opens_can_write(two_runs_db):
    from convexp.errors import StoreError
    from convexp.store import MetricRecord, Store

    before = sha256(two_runs_db)
    with Store(two_runs_db, read_only=True) as store:
        with pytest.raises(StoreError, match="opened read-only"):
            store.record(1, [MetricRecord(99, 1, "x", 1.0)])
        with pytest.raises(Exception, match="readonly|read-only"), store.engine.begin() as connection:
            connection.execute(text("DELETE FROM metrics"))
    assert sha256(two_runs_db) == before


def start_ui(*args: str) -> tuple[subprocess.Popen, str]:
    """`convexp ui --port 0 ...` in its own process; returns it and the address it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "convexp", "ui", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in process.stderr:
        lines.append(line)
        found = re.search(r"at (http://\S+/)", line)
        if found:
            return process, found.group(1)
    process.wait(timeout=600)
    raise AssertionError("convexp ui did not start: " + "".join(lines))


@contextlib.contextmanager
def browsing(db: Path, viewport: dict | None = None) -> Iterator[dict]:
    """A `convexp ui` on ``db`` and the system's Chromium through playwright: yields ``url`` and ``new_page(**options)``
    (a page of one shared context, or of its own with options such as ``color_scheme``), each page's errors and
    requests collected. Afterwards: the server logged no traceback, no page had an error, and nothing was
    fetched from anywhere but the app (every asset ships in the package)."""
    import shutil

    from playwright import sync_api

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    server, url = start_ui("--db", str(db))
    requested: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        context = browser.new_context(viewport=viewport or {"width": 1400, "height": 1100}, accept_downloads=True)

        def new_page(**options):
            page = browser.new_page(**options) if options else context.new_page()
            page.set_default_timeout(120_000)  # a bound on a broken page, not a timing: a loaded machine is slow
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            return page

        yield {"url": url, "new_page": new_page, "errors": errors, "requested": requested}
        browser.close()
    server.send_signal(signal.SIGINT)
    _, log = server.communicate(timeout=600)
    assert "Traceback" not in log, log
    assert not errors, errors
    assert all(r.startswith(url) or r.startswith("data:") for r in requested), [r for r in requested if not r.startswith(url)]


def test_an_experiments_groups_are_computed_once_while_its_runs_do_not_change(tmp_path, client_for):
    db = tmp_path / "kept.db"
    record_two_seeds(tmp_path, str(db))
    client = client_for(str(db))
    kept = client.app.state.views.experiment_cache
    path = "/api/experiments/tiny?by=seed&measure=edge_share&layer=conv1"
    first = client.get(path).json()
    assert client.get(path).json() == first and kept.computed == 1  # the same answer, not computed again
    assert client.get(path.replace("edge_share", "drift")).status_code == 200 and kept.computed == 2
    assert run_cli("tag", "2", "checked", "--db", str(db)).returncode == 0  # a run changes: computed afresh
    assert client.get(path).json() == first and kept.computed == 3
    assert run_cli("db", "thin", "1", "--keep-every", "5", "--db", str(db)).returncode == 0  # fewer snapshots: afresh
    thinned = client.get(path).json()
    assert kept.computed == 4 and len(thinned["curves"]["groups"][0]["runs"]["1"]["steps"]) < 47
    # a measure chosen before a layer: the first layer every run recorded, as if chosen
    assert client.get(path.replace("&layer=conv1", "")).json()["summary"] == thinned["summary"]
    # refusals name the page's parameters, not the CLI's options
    refused = client.get("/api/experiments/tiny?by=seeds").json()["error"]
    assert refused.startswith("by seeds: no such field in these runs") and "--" not in refused


def test_the_server_keeps_serving_and_logs_no_traceback(two_runs_db):
    process, url = start_ui("--db", str(two_runs_db))
    try:
        for path in (
            "api/runs/99",
            "runs/x",
            "api/runs/1/layers/conv1/kernels?step=zz",
            "compare?runs=1",
            "query?sql=DROP%20TABLE%20runs",
            "api/runs/1/layers/nope/analysis?step=1",
        ):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + path, timeout=10)
            assert refused.value.code in (400, 404)
        with urllib.request.urlopen(url + "api/runs/1/layers/conv1/analysis?step=46", timeout=10) as response:
            analysis = json.load(response)
        assert analysis["filters_count"] == 4 and analysis["step"] == 46
    finally:
        process.send_signal(signal.SIGINT)
        _, log = process.communicate(timeout=600)
    assert "Traceback" not in log and "Error" not in log, log
    assert url.startswith("http://127.0.0.1:")


def test_a_request_in_flight_when_the_server_stops_is_closed_with_a_503_and_one_line(two_runs_db):
    """Ctrl-C while a request is still being answered (an endless query, stopped by its time limit only well after
    the server's grace): the server closes it with a 503 and says so in one line, not a traceback."""
    import socket
    import urllib.parse

    from convexp.ui.server import SHUTDOWN_SECONDS

    process, url = start_ui("--db", str(two_runs_db), "--query-time-limit", str(SHUTDOWN_SECONDS + 10))
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    address = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((address.hostname, address.port), timeout=600) as slow:
            path = "/api/query?sql=" + urllib.parse.quote(endless)
            slow.sendall(f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
            # a later request answered on another connection: the server has read the first and is answering it
            with urllib.request.urlopen(url + "api/runs", timeout=600) as response:
                assert response.status == 200
            process.send_signal(signal.SIGINT)
            answer = b""
            while chunk := slow.recv(65536):
                answer += chunk
    finally:
        process.send_signal(signal.SIGINT)
        _, log = process.communicate(timeout=600)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"stopped before this answer was ready" in answer
    assert "Traceback" not in log, log
    assert "stopped before GET /api/query was answered" in log, log


def test_ui_refuses_a_database_it_cannot_show_in_one_line(tmp_path):
    from tests.cli.test_cli import assert_one_line_error

    assert_one_line_error(run_cli("ui", "--db", str(tmp_path / "missing.db")), "missing.db: no such database")
    foreign = tmp_path / "foreign.db"
    engine = create_engine(f"sqlite:///{foreign}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE notes (body TEXT)"))
    engine.dispose()
    before = sha256(foreign)
    assert_one_line_error(run_cli("ui", "--db", str(foreign)), "has tables (notes) but is not a convexp database")
    newer = tmp_path / "newer.db"
    assert run_cli("db", "upgrade", "--db", str(newer)).returncode == 0
    engine = create_engine(f"sqlite:///{newer}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    newer_before = sha256(newer)
    assert_one_line_error(run_cli("ui", "--db", str(newer)), "newer than this convexp")
    empty = tmp_path / "empty.db"
    empty.touch()
    assert_one_line_error(run_cli("ui", "--db", str(empty)), "not a convexp database yet")
    assert sha256(foreign) == before and sha256(newer) == newer_before and empty.stat().st_size == 0


def test_a_port_in_use_is_one_line(two_runs_db):
    import socket

    from tests.cli.test_cli import assert_one_line_error

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(run_cli("ui", "--db", str(two_runs_db), "--port", str(port)), f"127.0.0.1:{port} is already in use")


def test_a_public_host_prints_a_warning_line(two_runs_db):
    process = subprocess.Popen(
        [sys.executable, "-m", "convexp", "ui", "--port", "0", "--host", "0.0.0.0", "--db", str(two_runs_db)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = process.stderr.readline()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=600)
    assert first.startswith("warning: --host 0.0.0.0 is not a loopback address: the results in ")
    assert "readable by anyone who can reach this port" in first


def test_parameter_table_matches_the_keras_example_summary():
    """keras.io's "Simple MNIST convnet" prints 320, 18,496 and 16,010 parameters, 34,826 in all."""
    result = run_cli("validate", str(REPO / "experiments.yaml"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("mnist-keras-convnet:")[1].splitlines()[1:]
    block = "\n".join(line for line in lines[: next(i for i, line in enumerate(lines) if not line.startswith("  "))])
    rows = {line.split()[0]: line.split() for line in block.splitlines()}
    assert rows["conv1"][-1] == "320" and rows["conv2"][-1] == "18496" and rows["dense1"][-1] == "16010"
    assert rows["total"][-3:] == ["34720", "106", "34826"]
    assert "conv2: 64 filters of 3x3x32 = 18432 weights + 64 biases" in block


def test_show_prints_the_parameter_table(two_runs_db):
    result = run_cli("show", "1", "--db", str(two_runs_db))
    assert result.returncode == 0, result.stderr
    assert re.search(r"conv1\s+4x6x6\s+4x1x3x3\s+36\s+4\s+40", result.stdout)
    assert re.search(r"total\s+396\s+14\s+410", result.stdout)
    shown = json.loads(run_cli("show", "1", "--db", str(two_runs_db), "--format", "json").stdout)
    assert shown["parameters"][0] == {
        "layer": "conv1",
        "type": "conv",
        "output_shape": [4, 6, 6],
        "kernel_shape": [4, 1, 3, 3],
        "weights": 36,
        "biases": 4,
        "statistics": 0,
        "parameters": 40,
    }


def test_show_describes_a_run_whose_backend_is_not_installed(two_runs_db):
    """The layer plan comes from the recorded layers and dataset, not from a backend plugin."""
    result = run_cli("show", "1", "--db", str(two_runs_db), env={"CONVEXP_LOAD_PLUGINS": "none-such"})
    assert result.returncode == 0, result.stderr
    assert "input[1, 8, 8] -> conv1[4, 6, 6]" in result.stdout and "total" in result.stdout


def test_patches_of_a_deeper_layer_are_convexp_filters_patches(tmp_path, client_for):
    """The patches panel's data for conv2 is `convexp filters --patches`'s, and each patch's pixels are the
    test image's window at the position given."""
    from convexp.datasets import load_dataset

    body = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {"type": "maxpool", "pool_size": 2},
            {"type": "conv", "filters": 6, "kernel_size": 3, "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "snapshots": {"every": 3},
    }
    db = tmp_path / "deep.db"
    assert run_cli("run", str(write_experiments(tmp_path / "e.yaml", {"deep": body})), "--db", str(db)).returncode == 0
    response = client_for(str(db)).get("/api/runs/1/layers/conv2/patches?step=last&top=4")
    assert response.status_code == 200, response.text
    shown = response.json()
    cli = json.loads(
        run_cli("filters", "1", "--layer", "conv2", "--patches", "--top", "4", "--format", "json", "--db", str(db)).stdout
    )
    assert {k: v for k, v in shown.items() if k != "filters"} == {k: v for k, v in cli.items() if k != "filters"}
    assert shown["receptive_field"] == {"size": [8, 8], "jump": [2, 2], "offset": [-1, -1]}
    test_images = load_dataset("digits").test_images
    for ours, theirs in zip(shown["filters"], cli["filters"]):
        assert [{k: v for k, v in p.items() if k != "pixels"} for p in ours["patches"]] == theirs["patches"]
        for p in ours["patches"]:
            padded = np.pad(test_images[p["image"], 0], 8)
            window = padded[8 + p["top"] : 8 + p["top"] + 8, 8 + p["left"] : 8 + p["left"] + 8]
            np.testing.assert_allclose(np.reshape(p["pixels"], (8, 8)), window, atol=1e-4)


def test_the_listening_socket_is_tcp_so_small_responses_are_not_held_back():
    """asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; a socket made with
    protocol 0 kept Nagle's algorithm on, and each small response on a kept-alive connection waited
    ~40 ms for the client's delayed ACK (issue 28, bug 1)."""
    import asyncio
    import socket

    from convexp.ui.server import bind

    listening = bind("127.0.0.1", 0)
    client = socket.create_connection(listening.getsockname())
    served, _ = listening.accept()
    try:
        assert served.proto == socket.IPPROTO_TCP
        asyncio.base_events._set_nodelay(served)  # what asyncio's loop does with each connection it accepts
        assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        for s in (client, served, listening):
            s.close()
