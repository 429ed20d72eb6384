"""Shared fixtures: temporary databases, experiment files, the MNIST folder, and the CLI as a user runs it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
import zstandard

REPO = Path(__file__).resolve().parents[1]
MNIST_ENV = "CONVEXP_TEST_MNIST"

# The suite runs a test file per core (pytest-xdist), so a torch run never has the cores to itself. torch's
# OpenMP threads spin while they wait for work, which on shared cores takes them from the other worker: an MNIST
# epoch on torch took 85 s beside scripts/busy.py, 49 s with passive waiting (20.5 s either way alone; on an
# idle machine passive waiting costs torch about 20%, so convexp itself leaves torch's default alone). Set here,
# before anything imports torch, so that every process the tests start inherits it; a value given is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def decode_kernels(rows) -> dict[int, np.ndarray]:
    """step -> flat float32 kernel, from stored rows (step, encoding, kernel bytes) of one layer in step
    order starting at a raw row, decoded by the format docs/guides/database.md documents (not convexp's own code):
    a raw row holds float32 bytes; an 'xor-zstd' row holds the XOR of its words with the previous
    row's, as byte planes by significance: planes 0 and 1 as they are, planes 2 and 3 as one Zstandard
    frame ('xor-delta', the rows of before: deflated)."""
    out: dict[int, np.ndarray] = {}
    words = None
    for step, encoding, blob in rows:
        if encoding == "raw":
            words = np.frombuffer(bytes(blob), "<u4")
        else:
            assert encoding in ("xor-zstd", "xor-delta") and words is not None, (step, encoding)
            blob, low = bytes(blob), 2 * words.size
            unpack = zstandard.ZstdDecompressor().decompress if encoding == "xor-zstd" else zlib.decompress
            planes = np.frombuffer(blob[:low] + unpack(blob[low:]), np.uint8).reshape(4, -1)
            words = np.ascontiguousarray(planes.T).view("<u4").ravel() ^ words
        out[step] = words.view("<f4")
    return out


def stored_kernels(db: Path | str, layer: str, run_id: int = 1) -> dict[int, np.ndarray]:
    """step -> kernel (out, in, kh, kw) of one layer of a run, read with sqlite3 alone and decoded."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(
            "SELECT step, encoding, kernel, shape FROM kernel_snapshots WHERE run_id = ? AND layer = ? ORDER BY step",
            (run_id, layer),
        ).fetchall()
    shape = json.loads(rows[0][3])
    return {step: kernel.reshape(shape) for step, kernel in decode_kernels(r[:3] for r in rows).items()}


def stored_kernel(db: Path | str, run_id: int, layer: str, step: int) -> np.ndarray:
    """One stored kernel at ``step``, read with sqlite3 alone and decoded."""
    return stored_kernels(db, layer, run_id)[step]


def readme_read_kernel():
    """The documented ``read_kernel(db, run_id, layer, step)`` recipe (docs/guides/database.md: sqlite3 + numpy),
    run as a user copies it."""
    import re

    readme = (REPO / "docs" / "guides" / "database.md").read_text()
    recipe = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "def read_kernel" in block)
    namespace: dict = {}
    exec(recipe.split("\nkernel = read_kernel")[0], namespace)
    return namespace["read_kernel"]


def mnist_folder() -> Path | None:
    """The MNIST IDX folder tests use: $CONVEXP_TEST_MNIST, else ../shared/data/mnist beside the repo."""
    candidate = Path(os.environ.get(MNIST_ENV) or REPO.parent / "shared" / "data" / "mnist")
    return (
        candidate
        if (candidate / "train-images-idx3-ubyte.gz").exists() or (candidate / "train-images-idx3-ubyte").exists()
        else None
    )


@pytest.fixture
def mnist_dir() -> Path:
    folder = mnist_folder()
    if folder is None:
        pytest.skip(f"MNIST IDX files not found: set {MNIST_ENV} or put them in ../shared/data/mnist")
    return folder


@pytest.fixture(scope="session")
def mnist_keras_run(tmp_path_factory, worker_id) -> Path:
    """A database holding one run: one MNIST epoch of mnist-keras-convnet on numpy (run 1), made by the command
    the docs show (docs/examples.py's MNIST_NUMPY) in a folder of its own; what it printed is kept beside it
    in output.txt.

    Trained once per test session: the pytest-xdist workers share it through their common temporary folder,
    the first to need it training it while the others wait on its lock."""
    from filelock import FileLock

    folder = mnist_folder()
    if folder is None:
        pytest.skip(f"MNIST IDX files not found: set {MNIST_ENV} or put them in ../shared/data/mnist")
    if worker_id == "master":  # no xdist: this session's own folder
        return _mnist_keras_run(folder, tmp_path_factory.mktemp("mnist-run"))
    shared = tmp_path_factory.getbasetemp().parent  # this session's folder, above every worker's own
    with FileLock(str(shared / "mnist-run.lock")):
        where, trained = shared / "mnist-run", shared / "mnist-run-trained"
        if not trained.exists():  # first, or after a worker whose training failed: train afresh
            shutil.rmtree(where, ignore_errors=True)
            where.mkdir()
            _mnist_keras_run(folder, where)
            trained.touch()
        return where / "convexp.db"


def _mnist_keras_run(mnist: Path, where: Path) -> Path:
    examples = docs_examples()
    shutil.copy(REPO / "experiments.yaml", where / "experiments.yaml")
    status, printed = examples.run_command(examples.MNIST_NUMPY, where, examples.environment(mnist))
    assert status == 0, printed
    (where / "output.txt").write_text(printed)
    return where / "convexp.db"


def docs_module(name: str):
    """docs/NAME.py (the site's hooks, the examples' checks), loaded once: docs/ is not a package."""
    import importlib.util

    key = f"docs_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "docs" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # a dataclass in it looks its module up
        spec.loader.exec_module(module)
    return sys.modules[key]


def docs_examples():
    """docs/examples.py: the documentation's examples and how they are checked."""
    return docs_module("examples")


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "results.db"


def write_experiments(path: Path, experiments: dict, default: str | None = None) -> Path:
    document = {"experiments": experiments}
    if default:
        document["default"] = default
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


TINY_DIGITS = {
    "dataset": "digits",
    "backend": "numpy",
    "layers": [
        {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "maxpool", "pool_size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ],
    "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
    "epochs": 1,
    "batch_size": 64,
    "seed": 0,
}


@pytest.fixture
def tiny_experiments(tmp_path) -> Path:
    """An experiments file with one quick digits experiment called 'tiny'."""
    return write_experiments(tmp_path / "experiments.yaml", {"tiny": TINY_DIGITS})


@pytest.fixture(scope="module")
def small_db(tmp_path_factory) -> Path:
    """A database holding one finished 3-step digits run (run 1), made once per test module: copy it to change it."""
    db = tmp_path_factory.mktemp("small") / "r.db"
    result = run_cli(
        "run", str(write_experiments(db.parent / "e.yaml", {"tiny": {**TINY_DIGITS, "max_steps": 3}})), "--db", str(db)
    )
    assert result.returncode == 0, result.stderr
    return db


def sha256(path: Path) -> str | None:
    """Digest of a file (None if it does not exist): to prove a database was left as it was."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The one line a refused command printed on stderr (no traceback, a non-zero exit), holding every needle."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str = "") -> subprocess.CompletedProcess:
    """Run the convexp command as a user would, in a fresh process (``input`` is what the user types)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "convexp", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
        input=input,
    )


def wait_until(condition, what: str, limit: float = 600) -> None:
    """Poll ``condition`` (errors reading a database still being created count as not yet) until it holds;
    the limit only stops a broken test from hanging, it is not a timing the test relies on."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error, TypeError):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(f"waited {limit:.0f} s for {what}")


#: A PostgreSQL URL (a role that may create databases) for the PostgreSQL variants of the store
#: tests; .ci/run starts a server and sets it (see scripts/start-postgres.sh).
POSTGRES_ENV = "CONVEXP_TEST_POSTGRES"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (dropped afterwards)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        pytest.skip(f'{POSTGRES_ENV} is not set: start a server with `eval "$(bash scripts/start-postgres.sh)"` (CI does)')
    name = f"convexp_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def new_run(db_path):
    """A store on a fresh SQLite file and a run in it: (store, run_id); the store is closed afterwards."""
    from convexp.store import Store
    from tests.store.test_store import RUN_FIELDS

    store = Store(str(db_path))
    yield store, store.create_run(**RUN_FIELDS)
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A new results database URL: a SQLite file, then (where a server is available) PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'convexp.db'}"
    return request.getfixturevalue("postgres_url")


def sigint_as_a_terminal_delivers_it() -> None:
    """``preexec_fn`` for a child that must see Ctrl-C as a KeyboardInterrupt even when the tests run as a
    shell's background job (which starts them, and so every child, with SIGINT ignored)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def install_plugin(tmp_path_factory, package: Path) -> dict[str, str]:
    """A plugin package installed as a third party's would be (non-editable, no dependencies), from a copy so
    that pip's build/ folder is not left beside the source; the environment that finds it (PYTHONPATH)."""
    site, source = tmp_path_factory.mktemp(f"{package.name}-site"), tmp_path_factory.mktemp(f"{package.name}-source")
    shutil.copytree(package, source / package.name, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(source / package.name)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
