"""Adversarial probe: bad input of every kind against the CLI, the web app and the tracking API.

    python scripts/probe.py [--only cli,web,tracking] [--time-limit SECONDS]

Every case is something a user can do by mistake (or on purpose): ids too large for any database,
YAML keys given twice, a billion-run grid,
writes through the read-only query, an endless query, broken experiments files, bad environment
settings, paths that cannot be written, web requests with bad parameters, tracking calls with bad
values. Each must end in a clear error -- one line on stderr and no traceback for the CLI, a 4xx
(never 500) with a JSON error for the web app's API, a ConvexpError/ValueError/TypeError with a
one-line message for the tracking API -- with the exit status the README promises (2 for bad
input files and usage, 1 otherwise), and must leave the database's rows exactly as they were.

It builds its own database (a short run of quickstart), so it needs no network and no MNIST.
Prints each failed case and a summary; exits 1 if any case failed or the time limit ran out.
The test suite runs it (tests/cli/test_probe.py), so CI does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HUGE_ID = "99999999999999999999999"
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
SMALL = {
    "dataset": "digits",
    "backend": "numpy",
    "layers": [
        {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ],
    "epochs": 1,
    "batch_size": 64,
    "max_steps": 3,
}


@dataclass
class Outcome:
    """How the probe went: the failed cases with what was wrong, and how many ran."""

    ran: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, case: str, why: str) -> None:
        self.failures.append(f"{case}: {why}")


def fingerprint(db: Path) -> str:
    """A digest of every row of every table (not the file's bytes, which checkpoints may move)."""
    digest = hashlib.sha256()
    with contextlib.closing(sqlite3.connect(db)) as connection:
        tables = [t for (t,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            digest.update(table.encode())
            for row in connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def _arrays(folder: Path, name: str) -> Path:
    """A file of one's own images, wrong as its name says: one.npy (one array), wrap.npz (a uint64 label that int64
    wraps to -1), empty.npz (a test split of no images)."""
    import numpy as np

    images = np.zeros((10, 8, 8), np.uint8)
    labels = np.arange(10) % 2
    path = folder / name
    if name == "one.npy":
        np.save(path, images)
    elif name == "wrap.npz":
        np.savez(
            path, train_images=images, train_labels=np.full(10, 2**64 - 1, np.uint64), test_images=images, test_labels=labels
        )
    else:
        np.savez(path, train_images=images, train_labels=labels, test_images=images[:0], test_labels=labels[:0])
    return path


def damaged_copy(db: Path, folder: Path) -> Path:
    """A copy of the probe's database with random bytes over the pages after its first two (a bad disk)."""
    import random

    copy = folder / "damaged.db"
    copy.write_bytes(db.read_bytes())
    pages = copy.stat().st_size // 4096
    with open(copy, "r+b") as file:
        for page in range(2, pages):
            file.seek(page * 4096)
            file.write(random.Random(page).randbytes(4096))
    return copy


def write_files(folder: Path) -> dict[str, Path]:
    """The experiments files the CLI cases read, each wrong in one way."""

    def experiments(name: str, spec: dict | str) -> Path:
        path = folder / f"{name}.yaml"
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump({"experiments": {"a": spec}}))
        return path

    return {
        "good": experiments("good", SMALL),
        "syntax": experiments("syntax", "experiments:\n  a: [unclosed\n"),
        "unknown-field": experiments("unknown-field", {**SMALL, "bogus": 1}),
        "negative-epochs": experiments("negative-epochs", {**SMALL, "epochs": -1}),
        "unknown-backend": experiments("unknown-backend", {**SMALL, "backend": "nope"}),
        "unknown-initializer": experiments("unknown-initializer", {**SMALL, "initializer": "glorot_uniformm"}),
        "kernel-too-large": experiments(
            "kernel-too-large", {**SMALL, "layers": [{"type": "conv", "filters": 4, "kernel_size": 9}, {"type": "flatten"}]}
        ),
        "too-much-memory": experiments(
            "too-much-memory",
            {**SMALL, "layers": [{"type": "conv", "filters": 100_000_000, "kernel_size": 3}, {"type": "flatten"}]},
        ),
        "not-a-mapping": experiments("not-a-mapping", "- just\n- a list\n"),
        "empty": experiments("empty", ""),
        "binary": experiments("binary", "\x00\x01\x02 not yaml at all \xff"),
        "duplicate-key": experiments("duplicate-key", "experiments:\n  a: {dataset: digits, epochs: 1, epochs: 2}\n"),
        "duplicate-experiment": experiments(
            "duplicate-experiment", "experiments:\n  a: {dataset: digits}\n  a: {dataset: mnist}\n"
        ),
        "colon-name": experiments("colon-name", "experiments:\n  'a:b': {dataset: digits}\n"),
        "empty-grid": experiments("empty-grid", {**SMALL, "seed": []}),
        "numeric-tag": experiments("numeric-tag", {**SMALL, "tags": [7]}),
        "escape-in-layer-name": experiments(
            "escape-in-layer-name",
            {**SMALL, "layers": [{**SMALL["layers"][0], "name": "conv\x1b]0;title\x07"}, *SMALL["layers"][1:]]},
        ),
        "huge-shift": experiments("huge-shift", {**SMALL, "augmentation": {"shift": 1_000_000}}),
        "long-warmup": experiments(
            "long-warmup", {**SMALL, "optimizer": {"name": "sgd", "schedule": {"type": "cosine", "warmup_steps": 50}}}
        ),
        "npy-dataset": experiments("npy-dataset", {**SMALL, "dataset": {"path": str(_arrays(folder, "one.npy"))}}),
        "wrapping-labels": experiments("wrapping-labels", {**SMALL, "dataset": {"path": str(_arrays(folder, "wrap.npz"))}}),
        "empty-test-split": experiments("empty-test-split", {**SMALL, "dataset": {"path": str(_arrays(folder, "empty.npz"))}}),
        "billion-runs": experiments(
            "billion-runs",
            {
                **SMALL,
                "max_steps": None,
                "seed": list(range(1000)),
                "epochs": list(range(1, 1001)),
                "batch_size": list(range(1, 1001)),
            },
        ),
    }


def cli_cases(db: Path, files: dict[str, Path], folder: Path) -> list[tuple[str, list[str], int, str, dict[str, str]]]:
    """(name, arguments, exit status, a phrase the error must contain, environment) of each CLI case."""
    d = ["--db", str(db)]
    return [
        ("show an id larger than any database holds", ["show", HUGE_ID, *d], 1, "no run with id", {}),
        ("show an id that is not there", ["show", "999", *d], 1, "no run with id 999", {}),
        ("show a selector that matches nothing", ["show", "nope:numpy", *d], 1, "no run matches", {}),
        ("compare with a huge id", ["compare", "1", HUGE_ID, *d], 1, "no run with id", {}),
        ("filters of a layer that is not there", ["filters", "1", "--layer", "nope", *d], 1, "no snapshots of layer 'nope'", {}),
        (
            "filters at a step not recorded",
            ["filters", "1", "--step", "123456", *d],
            1,
            "no snapshot of conv1 at step 123456",
            {},
        ),
        ("filters at a step that is no number", ["filters", "1", "--step", "soon", *d], 1, "step must be a number", {}),
        ("filters at a huge step", ["filters", "1", "--step", HUGE_ID, *d], 1, "no snapshot of conv1", {}),
        ("a query that deletes", ["query", "DELETE FROM runs", *d], 1, "read-only", {}),
        ("a query that drops a table", ["query", "DROP TABLE runs", *d], 1, "read-only", {}),
        ("a query that updates", ["query", "UPDATE runs SET status = 'failed'", *d], 1, "read-only", {}),
        ("a query that attaches a file", ["query", f"ATTACH DATABASE '{folder / 'x.db'}' AS x", *d], 1, "read-only", {}),
        ("a query that writes a pragma", ["query", "PRAGMA writable_schema = 1", *d], 1, "read-only", {}),
        ("two statements", ["query", "SELECT 1; DELETE FROM runs", *d], 1, "", {}),
        ("a query of a table that is not there", ["query", "SELECT * FROM nope", *d], 1, "no such table", {}),
        ("an endless query", ["query", ENDLESS, "--time-limit", "0.5", *d], 1, "time limit of 0.5 s", {}),
        ("a negative time limit", ["query", "SELECT 1", "--time-limit", "-1", *d], 2, "", {}),
        ("runs where a field is not there", ["runs", "--where", "nope=1", *d], 1, "no such field", {}),
        ("runs where with no value", ["runs", "--where", "epochs", *d], 1, "", {}),
        ("an output format that is not there", ["runs", "--format", "xml", *d], 2, "", {}),
        ("an experiments file that is not there", ["run", str(folder / "missing.yaml"), *d], 2, "no such experiments file", {}),
        ("malformed YAML", ["run", str(files["syntax"]), *d], 2, "malformed YAML", {}),
        ("a YAML list, not experiments", ["run", str(files["not-a-mapping"]), *d], 2, "not-a-mapping.yaml", {}),
        ("an empty experiments file", ["run", str(files["empty"]), *d], 2, "empty.yaml", {}),
        ("a binary experiments file", ["run", str(files["binary"]), *d], 2, "binary.yaml", {}),
        ("an unknown field", ["run", str(files["unknown-field"]), *d], 2, "bogus", {}),
        ("negative epochs", ["run", str(files["negative-epochs"]), *d], 2, "epochs", {}),
        ("an unknown backend", ["run", str(files["unknown-backend"]), *d], 2, "nope", {}),
        ("an unknown initializer", ["run", str(files["unknown-initializer"]), *d], 2, "glorot_uniform", {}),
        ("a kernel larger than its input", ["validate", str(files["kernel-too-large"])], 2, "kernel", {}),
        ("a run that cannot fit in memory", ["run", str(files["too-much-memory"]), *d], 2, "memory", {}),
        ("an experiment that is not there", ["run", str(files["good"]), "-e", "nope", *d], 2, "no experiment 'nope'", {}),
        ("resume a finished run", ["run", "--resume", "1", *d], 1, "nothing to resume", {}),
        ("resume a huge id", ["run", "--resume", HUGE_ID, *d], 1, "no run with id", {}),
        (
            "a bad snapshot encoding",
            ["run", str(files["good"]), *d],
            1,
            "CONVEXP_SNAPSHOT_ENCODING",
            {"CONVEXP_SNAPSHOT_ENCODING": "gzip"},
        ),
        ("a bad writer setting", ["run", str(files["good"]), *d], 1, "CONVEXP_WRITER", {"CONVEXP_WRITER": "nope"}),
        ("delete a run that is not there", ["db", "delete", "999", "--yes", *d], 1, "no run with id 999", {}),
        ("thin keeping every 0th step", ["db", "thin", "1", "--keep-every", "0", *d], 2, "", {}),
        ("check a run that is not there", ["db", "check", "999", *d], 1, "no run with id 999", {}),
        (
            "a picture into a folder that is not there",
            ["plot", "filters", "1", "--out", "/nonexistent/f.png", *d],
            2,
            "does not exist",
            {},
        ),
        (
            "a picture of an unknown format",
            ["plot", "filters", "1", "--out", str(folder / "f.unknown"), *d],
            2,
            "cannot write",
            {},
        ),
        ("a report of a run that is not there", ["report", "nope", *d], 1, "no run matches", {}),
        ("a database that is not one", ["runs", "--db", str(files["binary"])], 1, "not a usable database", {}),
        ("a database in a folder that is not there", ["runs", "--db", "/nonexistent/x.db"], 1, "no such database", {}),
        (
            "a database URL nothing answers",
            ["runs", "--db", "postgresql+psycopg://u@127.0.0.1:1/x"],
            1,
            "not a usable database",
            {},
        ),
        ("a database URL that is no URL", ["runs", "--db", "nope://"], 1, "", {}),
        ("an in-memory database", ["run", str(files["good"]), "--db", "sqlite://"], 1, "in-memory", {}),
        ("a conformance check of no backend", ["check", "nope"], 2, "nope", {}),
        ("a key given twice", ["run", str(files["duplicate-key"]), *d], 2, "'epochs' is given twice", {}),
        ("an experiment given twice", ["run", str(files["duplicate-experiment"]), *d], 2, "'a' is given twice", {}),
        ("a colon in an experiment name", ["validate", str(files["colon-name"])], 2, "cannot hold ':'", {}),
        ("a grid axis with no values", ["run", str(files["empty-grid"]), *d], 2, "an empty list gives no runs", {}),
        ("a billion-run grid", ["run", str(files["billion-runs"]), *d], 1, "the runs would write up to", {}),
        ("a SQLite URL parameter", ["runs", "--db", f"sqlite:///{db}?mode=ro"], 1, "no SQLite URL parameters", {}),
        ("--force without --resume", ["run", str(files["good"]), "--force", *d], 1, "give it with --resume RUN", {}),
        ("a selector with emoji codes", ["show", "a:b:numpy", *d], 1, "'a:b:numpy'", {}),
        (
            "a bad confirm threshold",
            ["run", str(files["good"]), *d],
            1,
            "CONVEXP_CONFIRM_BYTES='lots'",
            {"CONVEXP_CONFIRM_BYTES": "lots"},
        ),
        ("a bad run threshold", ["run", str(files["good"]), *d], 1, "CONVEXP_CONFIRM_RUNS='-1'", {"CONVEXP_CONFIRM_RUNS": "-1"}),
        (
            "a bad allocator setting",
            ["run", str(files["good"]), *d],
            1,
            "CONVEXP_MALLOC_TUNING='yes'",
            {"CONVEXP_MALLOC_TUNING": "yes"},
        ),
        ("an ASCII terminal", ["runs", *d], 0, "", {"PYTHONIOENCODING": "ascii"}),
        ("a tag with a space", ["tag", "1", "two words", *d], 1, "cannot hold spaces", {}),
        ("a tag of a run that is not there", ["tag", HUGE_ID, "x", *d], 1, "no run with id", {}),
        ("an empty run name", ["name", "1", " ", *d], 1, "cannot be empty", {}),
        ("a run name of two lines", ["name", "1", "a\nb", *d], 1, "control characters", {}),
        ("a name and --clear", ["name", "1", "x", "--clear", *d], 1, "or --clear", {}),
        ("notes without text", ["note", "1", *d], 1, "give the notes", {}),
        ("a tag as a number in the file", ["run", str(files["numeric-tag"]), *d], 2, "a tag is a string", {}),
        ("an escape sequence in a layer name", ["validate", str(files["escape-in-layer-name"])], 2, "layer name", {}),
        ("a shift larger than the image", ["run", str(files["huge-shift"]), *d], 2, "augmentation.shift", {}),
        ("a warmup longer than the run", ["run", str(files["long-warmup"]), *d], 2, "warmup_steps", {}),
        ("a .npy file as a dataset", ["run", str(files["npy-dataset"]), *d], 2, "a .npy file of one array", {}),
        ("labels a wider integer type would wrap", ["run", str(files["wrapping-labels"]), *d], 2, "holds the label", {}),
        ("a dataset with an empty test split", ["run", str(files["empty-test-split"]), *d], 2, "holds no images", {}),
        ("a note that is not UTF-8", ["note", "1", "caf\udce9", *d], 1, "not UTF-8", {}),
        ("a damaged database file", ["runs", "--db", str(damaged_copy(db, folder))], 1, "convexp db check", {}),
        ("a damaged database file's run", ["show", "1", "--db", str(folder / "damaged.db")], 1, "convexp db check", {}),
    ]


def probe_cli(db: Path, folder: Path, outcome: Outcome, deadline: float) -> None:
    """Run each CLI case in a fresh process, as a user would (two at a time: each waits mostly on start-up)."""
    from concurrent.futures import ThreadPoolExecutor

    files = write_files(folder)
    before = fingerprint(db)

    def attempt(case) -> tuple[str, str | None]:
        name, args, status, phrase, env = case
        if time.monotonic() > deadline:
            return name, "not run: the probe's time limit ran out"
        try:
            result = subprocess.run(
                [sys.executable, "-m", "convexp", *args],
                capture_output=True, text=True, timeout=60, cwd=folder, env={**os.environ, "COLUMNS": "200", **env},
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return name, "still running after 60 s"
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode != status:
            return name, f"exit status {result.returncode}, not {status}; stderr: {result.stderr.strip()[:300]}"
        if "Traceback" in result.stderr:
            return name, f"a traceback: {result.stderr.strip()[-300:]}"
        if status == 0:
            return name, None
        if status == 1 and len(lines) != 1:  # a usage error (2) is Click's own two or three lines
            return name, f"{len(lines)} lines on stderr, not one: {result.stderr.strip()[:300]}"
        if phrase and phrase not in result.stderr:
            return name, f"the error does not say {phrase!r}: {result.stderr.strip()[:300]}"
        return name, None

    with ThreadPoolExecutor(2) as pool:
        for name, problem in pool.map(attempt, cli_cases(db, files, folder)):
            outcome.ran += 1
            if problem is not None:
                outcome.fail(name, problem)
            now = fingerprint(db)
            if now != before:
                outcome.fail(name, "the database changed (in this case or the one run beside it)")
                before = now


def web_cases() -> list[tuple[str, str, str, tuple[int, ...]]]:
    """(name, method, path, the statuses it may answer) of each web case."""
    kernels = "/api/runs/1/layers/conv1/kernels"
    return [
        ("a run page of a huge id", "GET", f"/runs/{HUGE_ID}", (404,)),
        ("a run page of a word", "GET", "/runs/abc", (404,)),
        ("a run page of a negative id", "GET", "/runs/-1", (404,)),
        ("a run's API of a huge id", "GET", f"/api/runs/{HUGE_ID}", (404,)),
        ("kernels of a layer that is not there", "GET", "/api/runs/1/layers/nope/kernels", (404,)),
        ("kernels at a word step", "GET", f"{kernels}?step=soon", (400, 404)),
        ("kernels at a step not recorded", "GET", f"{kernels}?step=123456", (404,)),
        ("kernels at a huge step", "GET", f"{kernels}?step={HUGE_ID}", (400, 404)),
        ("kernels at a negative count", "GET", f"{kernels}?step=0&count=-1", (400,)),
        ("kernels at a huge count", "GET", f"{kernels}?step=0&count={HUGE_ID}", (400,)),
        ("kernels at a count that is no number", "GET", f"{kernels}?step=0&count=1e9", (400,)),
        ("a filter that is not there", "GET", "/api/runs/1/layers/conv1/filters/999", (404,)),
        ("a filter that is no number", "GET", "/api/runs/1/layers/conv1/filters/x", (404,)),
        ("a filter at a huge index", "GET", f"/api/runs/1/layers/conv1/filters/{HUGE_ID}", (404,)),
        ("metrics after a word", "GET", "/api/runs/1/metrics?after=x", (400,)),
        ("steps after a huge step", "GET", f"/api/runs/1/layers/conv1/steps?after={HUGE_ID}", (400,)),
        ("runs updated after a word", "GET", "/api/runs?ids=1,x&after=0", (400,)),
        ("compare a word", "GET", "/api/compare?runs=1,abc", (400, 404)),
        ("compare a huge id", "GET", f"/api/compare?runs=1,{HUGE_ID}", (400, 404)),
        ("an experiment that is not there", "GET", "/experiments/nope", (404,)),
        ("a query that deletes", "GET", "/api/query?sql=DELETE%20FROM%20runs", (400,)),
        ("a query that attaches", "GET", "/api/query?sql=ATTACH%20DATABASE%20%27x.db%27%20AS%20x", (400,)),
        ("a query as CSV that drops", "GET", "/query.csv?sql=DROP%20TABLE%20runs", (400,)),
        ("an endless query", "GET", "/api/query?sql=" + ENDLESS.replace(" ", "%20"), (400,)),
        ("a query with a huge limit", "GET", f"/api/query?sql=SELECT%201&limit={HUGE_ID}", (400,)),
        ("a posted query", "POST", "/api/query?sql=SELECT%201", (405,)),
        ("a static file outside the folder", "GET", "/static/../../convexp/__init__.py", (404,)),
        ("a static file escaped outside the folder", "GET", "/static/..%2f..%2fREADME.md", (404,)),
        ("a path that is not there", "GET", "/nope", (404,)),
        ("curves of a run that is not there", "GET", f"/runs/{HUGE_ID}/curves.csv", (404,)),
        ("a distribution of a layer that is not there", "GET", "/api/runs/1/layers/nope/distribution", (404,)),
        ("a distribution of one point", "GET", "/api/runs/1/layers/conv1/distribution?points=1", (400,)),
        ("a distribution of a huge number of points", "GET", f"/api/runs/1/layers/conv1/distribution?points={HUGE_ID}", (400,)),
        ("a histogram of no bins", "GET", "/api/runs/1/layers/conv1/histogram?bins=0", (400,)),
        ("a histogram at a step not recorded", "GET", "/api/runs/1/layers/conv1/histogram?step=123456", (404,)),
        ("a GIF that ends before it starts", "GET", "/runs/1/layers/conv1/filters.gif?from=9&to=3", (400,)),
        ("a GIF from a word", "GET", "/runs/1/layers/conv1/filters.gif?from=soon", (400,)),
        ("a GIF of no frames", "GET", "/runs/1/layers/conv1/filters.gif?frames=1", (400,)),
        ("a GIF of steps with no snapshot", "GET", "/runs/1/layers/conv1/filters.gif?from=123456&to=123457", (400,)),
        ("a GIF of more frames than its bound", "GET", "/runs/1/layers/conv1/filters.gif?frames=1000", (400,)),
        ("a trajectory of a million points", "GET", "/api/runs/1/layers/conv1/filters/0?points=1000000", (400,)),
        ("a layer with a slash that is not there", "GET", "/api/runs/1/layers/block1/conv/steps", (404,)),
        ("an experiment with a slash that is not there", "GET", "/api/experiments/team/a", (404,)),
        ("a GIF of a layer with a slash that is not there", "GET", "/runs/1/layers/a/b/filters.gif", (404,)),
    ]


def probe_web(db: Path, outcome: Outcome, deadline: float) -> None:
    """Ask the web app (through starlette's TestClient: the app as served, without a socket) each case."""
    from starlette.testclient import TestClient

    from convexp.ui import create_app

    before = fingerprint(db)
    with TestClient(create_app(str(db), query_time_limit=0.5)) as client:
        for name, method, path, statuses in web_cases():
            if time.monotonic() > deadline:
                outcome.fail(name, "not run: the probe's time limit ran out")
                continue
            outcome.ran += 1
            response = client.request(method, path)
            if response.status_code not in statuses:
                outcome.fail(name, f"{method} {path}: HTTP {response.status_code}, not {statuses}: {response.text[:200]}")
            elif path.startswith("/api/") and response.status_code != 405:
                try:
                    error = response.json().get("error")
                except (ValueError, AttributeError):
                    error = None
                if not error or "\n" in error:
                    outcome.fail(name, f"{method} {path}: no one-line JSON error: {response.text[:200]}")
            if client.get("/api/runs").status_code != 200:  # and the app keeps serving
                outcome.fail(name, "the app stopped answering /api/runs after it")
            if fingerprint(db) != before:
                outcome.fail(name, "the database changed")
                before = fingerprint(db)


def tracking_cases(folder: Path) -> list[tuple[str, Callable[[object], None]]]:
    """(name, a bad call on an open tracked run) of each tracking case."""
    import numpy as np

    import convexp

    kernel = np.zeros((4, 1, 3, 3), np.float32)

    def backwards(run) -> None:
        run.log_metrics({"loss": 1.0}, step=5)
        run.log_metrics({"loss": 1.0}, step=3)

    def changed_shape(run) -> None:
        run.log_kernels({"conv1": (kernel, None)}, step=1)
        run.log_kernels({"conv1": (np.zeros((5, 1, 3, 3), np.float32), None)}, step=2)

    return [
        ("a metric that is not a number", lambda run: run.log_metrics({"loss": "low"}, step=1)),
        ("a metric that is NaN", lambda run: run.log_metrics({"loss": float("nan")}, step=1)),
        ("a negative step", lambda run: run.log_metrics({"loss": 1.0}, step=-1)),
        ("a step that is no number", lambda run: run.log_metrics({"loss": 1.0}, step="one")),
        ("a step that goes back", backwards),
        ("kernels of something that is no model", lambda run: run.log_kernels(object(), step=1)),
        ("kernels of a model with no conv layer", lambda run: run.log_kernels({}, step=1)),
        ("a kernel whose shape changes", changed_shape),
        ("a status that is not one", lambda run: run.finish("done")),
        (
            "a kernel holding NaN",
            lambda run: run.log_kernels({"conv1": (np.full((4, 1, 3, 3), np.nan, np.float32), None)}, step=1),
        ),
        ("a bias holding infinity", lambda run: run.log_kernels({"conv1": (kernel, np.full(4, np.inf, np.float32))}, step=1)),
        ("an experiment name with a colon", lambda run: convexp.track("a:b", db=str(folder / "colon.db"))),
        ("a step beyond the database's integers", lambda run: run.log_metrics({"loss": 1.0}, step=2**63)),
        ("a step that is True", lambda run: run.log_metrics({"loss": 1.0}, step=True)),
        ("an epoch that is no number", lambda run: run.log_metrics({"loss": 1.0}, step=1, epoch="first")),
        ("tags given as one string", lambda run: convexp.track("p", db=str(folder / "tags.db"), tags="baseline")),
        ("notes given as a list", lambda run: convexp.track("p", db=str(folder / "notes.db"), notes=["a"])),
        *_torch_cases(),
    ]


def _torch_cases() -> list[tuple[str, Callable[[object], None]]]:
    """Tracking cases of a torch model (a subclass, as a user writes one), where torch is installed."""
    try:
        import torch
    except ImportError:
        return []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

    def swapped(run) -> None:
        model = Net()
        run.log_kernels(model, step=1)
        model.conv.weight = torch.nn.Parameter(torch.zeros(6, 1, 3, 3))
        run.log_kernels(model, step=2)

    def removed(run) -> None:
        model = Net()
        run.log_kernels(model, step=1)
        del model.conv
        run.log_kernels(model, step=2)

    return [("a torch kernel swapped for another shape", swapped), ("a torch conv layer removed", removed)]


def probe_tracking(folder: Path, outcome: Outcome, deadline: float) -> None:
    """Make each bad call on a run recorded with convexp.track: a clear one-line exception, the steps
    before it kept whole, and the run still able to finish."""
    import convexp
    from convexp.errors import ConvexpError
    from convexp.store.check import check_database

    for index, (name, call) in enumerate(tracking_cases(folder)):
        if time.monotonic() > deadline:
            outcome.fail(name, "not run: the probe's time limit ran out")
            continue
        outcome.ran += 1
        db = folder / f"tracking-{index}.db"
        run = convexp.track("probe", db=str(db))
        try:
            call(run)
        except (ConvexpError, ValueError, TypeError) as exc:
            if "\n" in str(exc) or not str(exc):
                outcome.fail(name, f"not a one-line message: {exc!r}")
        except Exception as exc:  # noqa: BLE001 - the point is to see what escapes
            outcome.fail(name, f"{type(exc).__name__}: {exc}")
        else:
            outcome.fail(name, "accepted")
        try:
            run.finish()
        except Exception as exc:  # noqa: BLE001
            outcome.fail(name, f"the run could not finish after the refused call: {type(exc).__name__}: {exc}")
        report = check_database(str(db))
        if not report.ok:
            outcome.fail(name, "the database is damaged after it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="cli,web,tracking", help="which surfaces to probe (default: all three)")
    parser.add_argument("--time-limit", type=float, default=600.0, help="stop starting cases after this many seconds")
    args = parser.parse_args()
    surfaces = set(args.only.split(","))
    started = time.monotonic()
    deadline = started + args.time_limit
    outcome = Outcome()
    with tempfile.TemporaryDirectory(prefix="convexp-probe-") as name:
        folder = Path(name)
        db = folder / "probe.db"
        experiments = folder / "quick.yaml"
        experiments.write_text(yaml.safe_dump({"experiments": {"quick": SMALL}}))
        made = subprocess.run(
            [sys.executable, "-m", "convexp", "run", str(experiments), "--db", str(db)], capture_output=True, text=True
        )
        if made.returncode != 0:
            sys.exit(f"could not record the probe's run: {made.stderr.strip()}")
        if "cli" in surfaces:
            probe_cli(db, folder, outcome, deadline)
        if "web" in surfaces:
            probe_web(db, outcome, deadline)
        if "tracking" in surfaces:
            probe_tracking(folder, outcome, deadline)
    for failure in outcome.failures:
        print(f"FAILED {failure}")
    print(
        json.dumps({"cases": outcome.ran, "failed": len(outcome.failures), "seconds": round(time.monotonic() - started, 1)}),
    )
    sys.exit(1 if outcome.failures else 0)


if __name__ == "__main__":
    main()
