"""The command line as a new user meets it: run, runs, query, init, plugins, validate, and bad input."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3

import numpy as np
import pytest

from tests.conftest import REPO, TINY_DIGITS, run_cli, sha256, write_experiments


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """`convexp run` with no arguments, in a folder holding the repository's experiments.yaml."""
    folder = tmp_path_factory.mktemp("quickstart")
    shutil.copy(REPO / "experiments.yaml", folder / "experiments.yaml")
    result = run_cli("run", cwd=folder, env={"CONVEXP_DB": ""})
    assert result.returncode == 0, result.stderr
    return folder, result


def test_run_quickstart_reaches_95_percent_on_digits(quickstart):
    folder, result = quickstart
    assert "run 1 quickstart/numpy: finished, test accuracy" in result.stdout
    runs = json.loads(run_cli("runs", "--format", "json", cwd=folder).stdout)
    assert len(runs) == 1
    assert runs[0]["status"] == "finished" and runs[0]["backend"] == "numpy" and runs[0]["epochs"] == 20
    assert runs[0]["test_accuracy"] >= 0.95


def test_every_step_schedule_records_steps_plus_one_snapshots(quickstart):
    folder, _ = quickstart
    db = sqlite3.connect(folder / "convexp.db")
    steps = db.execute("SELECT steps_completed FROM runs WHERE id = 1").fetchone()[0]
    assert steps == 20 * math.ceil(1437 / 32)
    count, first, last = db.execute(
        "SELECT count(*), min(step), max(step) FROM kernel_snapshots WHERE run_id = 1 AND layer = 'conv1'"
    ).fetchone()
    assert (count, first, last) == (steps + 1, 0, steps)
    metric_steps = db.execute("SELECT count(*) FROM metrics WHERE run_id = 1 AND name = 'train_loss'").fetchone()[0]
    assert metric_steps == steps
    assert (
        db.execute("SELECT count(*) FROM metrics WHERE name IN ('test_loss', 'test_accuracy', 'epoch_seconds')").fetchone()[0]
        == 60
    )


def test_step_zero_kernels_lie_within_the_glorot_limit(quickstart):
    folder, _ = quickstart
    db = sqlite3.connect(folder / "convexp.db")
    blob, shape = db.execute("SELECT kernel, shape FROM kernel_snapshots WHERE run_id = 1 AND step = 0").fetchone()
    kernel = np.frombuffer(blob, "<f4").reshape(json.loads(shape))
    out_c, in_c, kh, kw = kernel.shape
    assert kernel.shape == (32, 1, 3, 3)
    limit = math.sqrt(6 / (kh * kw * in_c + kh * kw * out_c))
    assert np.abs(kernel).max() <= limit
    bias = np.frombuffer(db.execute("SELECT bias FROM kernel_snapshots WHERE run_id = 1 AND step = 0").fetchone()[0], "<f4")
    assert np.all(bias == 0)


def test_query_prints_table_csv_and_json(quickstart):
    folder, _ = quickstart
    sql = "SELECT layer, step, shape FROM kernel_snapshots WHERE run_id = 1 LIMIT 5"
    table = run_cli("query", sql, cwd=folder)
    assert table.returncode == 0 and "conv1" in table.stdout and "[32, 1, 3, 3]" in table.stdout
    csv_out = run_cli("query", sql, "--format", "csv", cwd=folder).stdout.splitlines()
    assert csv_out[0] == "layer,step,shape" and csv_out[1] == 'conv1,0,"[32, 1, 3, 3]"' and len(csv_out) == 6
    rows = json.loads(run_cli("query", sql, "--format", "json", cwd=folder).stdout)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]


def test_variance_of_a_large_glorot_layer_read_straight_from_sqlite(tmp_path):
    body = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {"type": "conv", "filters": 64, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "max_steps": 1,
    }
    path = write_experiments(tmp_path / "e.yaml", {"wide": body})
    result = run_cli("run", str(path), "--db", str(tmp_path / "r.db"))
    assert result.returncode == 0, result.stderr
    blob, shape = (
        sqlite3.connect(tmp_path / "r.db")
        .execute("SELECT kernel, shape FROM kernel_snapshots WHERE layer = 'conv2' AND step = 0")
        .fetchone()
    )
    kernel = np.frombuffer(blob, "<f4").reshape(json.loads(shape)).astype(np.float64)
    assert kernel.size == 64 * 32 * 9
    limit = math.sqrt(6 / (9 * 32 + 9 * 64))
    assert np.abs(kernel).max() <= limit
    assert kernel.var() == pytest.approx(limit**2 / 3, rel=0.05)


def test_a_run_stopped_by_max_steps_says_so_as_it_starts(tmp_path):
    """The start line gives the epoch's steps and, when max_steps stops the run sooner, where it stops."""
    path = write_experiments(tmp_path / "e.yaml", {"short": {**TINY_DIGITS, "epochs": 2, "max_steps": 7}})
    result = run_cli("run", str(path), "--db", str(tmp_path / "r.db"), env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    steps = math.ceil(1437 / 64)  # the digits' training split (1,437 images, as `convexp run` says) in batches of 64
    assert f"1437 train / 360 test, 2 epoch(s) x {steps} steps, stopping at step 7 (max_steps), init" in result.stderr
    whole = run_cli("run", str(path), "--db", str(tmp_path / "r.db"), "--set", "max_steps=46", env={"COLUMNS": "300"})
    assert f"2 epoch(s) x {steps} steps, init" in whole.stderr  # max_steps at the run's own end stops nothing sooner


def test_init_explains_glorot_uniform_for_a_keras_conv():
    result = run_cli("init", "glorot_uniform", "--shape", "3,3,1,32", "--sample", "--seed", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fan_in    = kh*kw*in  = 3*3*1 = 9" in out
    assert "fan_out   = kh*kw*out = 3*3*32 = 288" in out
    assert f"limit     = {math.sqrt(6 / 297):.6g}" in out
    assert f"variance  {2 / 297:.6g}" in out
    assert "sample of 288 weights" in out


def test_plugins_json_shows_numpy_usable():
    result = run_cli("plugins", "--format", "json")
    numpy_backend = next(b for b in json.loads(result.stdout) if b["name"] == "numpy")
    assert numpy_backend["usable"] is True and numpy_backend["framework_version"] == np.__version__


def test_validate_reports_each_experiment():
    result = run_cli("validate", str(REPO / "experiments.yaml"))
    assert result.returncode == 0
    assert "mnist-keras-convnet: 1 run(s), mnist" in result.stdout


def test_validate_and_run_in_a_folder_without_experiments_use_the_bundled_examples(tmp_path):
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no ./experiments.yaml here: using the examples that come with convexp" in result.stderr
    for name in ("quickstart", "mnist-keras-convnet", "cross-backend-agreement", "digits-grid"):
        assert f"{name}: " in result.stdout
    write_experiments(tmp_path / "experiments.yaml", {"mine": TINY_DIGITS})
    own = run_cli("validate", cwd=tmp_path)
    assert own.returncode == 0 and "mine: 1 run(s)" in own.stdout and "examples that come with" not in own.stderr
    missing = run_cli("validate", str(tmp_path / "nope.yaml"), cwd=tmp_path)  # a named file is never replaced
    assert missing.returncode != 0 and "nope.yaml: no such experiments file" in missing.stderr


def test_help_lists_the_commands():
    out = run_cli("--help").stdout
    for command in ("run", "runs", "query", "init", "plugins", "validate", "data", "db"):
        assert command in out


def test_version_names_the_installed_distribution_and_the_newest_migration():
    """``convexp --version``: the version pip installed (the package's metadata) and the schema revision of the
    newest script in migrations/, the revision new databases get."""
    from importlib.metadata import version

    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(REPO / "migrations")).get_current_head()
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"convexp {version('convexp')} (database schema {head})\n"
    assert "--version" in run_cli("--help").stdout


def test_brackets_in_help_errors_and_tables_print_as_written(existing_db, tmp_path):
    """Rich reads "[word]" as markup: help, error lines and table cells must not lose such text."""
    help_text = " ".join(run_cli("run", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "needs convexp[dask]" in help_text and "[default: $CONVEXP_DB or ./convexp.db]" in help_text
    path = write_experiments(tmp_path / "b.yaml", {"tiny": {**TINY_DIGITS, "backend": "torch[cuda]"}})
    assert_one_line_error(run_cli("run", str(path), "--db", str(existing_db)), "unknown backend 'torch[cuda]'")
    table = run_cli("query", "SELECT '[bold]x[/bold]' AS \"[red]\"", "--db", str(existing_db))
    assert table.returncode == 0 and "[bold]x[/bold]" in table.stdout and "[red]" in table.stdout


@pytest.fixture
def existing_db(tmp_path, tiny_experiments):
    db = tmp_path / "r.db"
    result = run_cli("run", str(tiny_experiments), "--db", str(db))
    assert result.returncode == 0, result.stderr
    return db


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "content, fragments",
    [
        ("experiments:\n  tiny: {dataset: digits\n", ["malformed YAML"]),
        (None, ["experiment 'tiny'", "field 'epohcs'", "did you mean 'epochs'"]),
        (
            "experiments:\n  tiny: {dataset: digits, backend: tensorflw, epochs: 1, layers: [{type: flatten}, {type: dense, units: 10}]}\n",
            ["field 'backend'", "unknown backend 'tensorflw'"],
        ),
    ],
)
def test_bad_experiment_files_leave_the_database_as_it_was(existing_db, tmp_path, content, fragments):
    path = tmp_path / "bad.yaml"
    if content is None:
        write_experiments(path, {"tiny": {**TINY_DIGITS, "epohcs": 2}})
    else:
        path.write_text(content)
    before = sha256(existing_db)
    assert_one_line_error(run_cli("run", str(path), "--db", str(existing_db)), str(path), *fragments)
    assert sha256(existing_db) == before


def test_missing_mnist_says_how_to_get_it(existing_db, tmp_path):
    path = write_experiments(
        tmp_path / "m.yaml",
        {"m": {**TINY_DIGITS, "dataset": "mnist", "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}},
    )
    before = sha256(existing_db)
    env = {"CONVEXP_DATA_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "empty-cache")}
    result = run_cli("run", str(path), "--db", str(existing_db), env=env)
    assert_one_line_error(result, "MNIST not found", "convexp data import")
    assert sha256(existing_db) == before


def test_write_statement_in_query_is_refused(existing_db):
    before = sha256(existing_db)
    assert_one_line_error(run_cli("query", "DELETE FROM runs", "--db", str(existing_db)), "read-only")
    assert sha256(existing_db) == before


def test_database_from_the_future_is_refused(existing_db, tiny_experiments):
    connection = sqlite3.connect(existing_db)
    connection.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    connection.commit()
    connection.close()
    before = sha256(existing_db)
    for args in (["runs"], ["run", str(tiny_experiments)], ["query", "SELECT 1"]):
        assert_one_line_error(run_cli(*args, "--db", str(existing_db)), "ffff_from_the_future", "newer than this convexp")
    assert sha256(existing_db) == before


def test_db_upgrade_creates_and_reports(tmp_path):
    result = run_cli("db", "upgrade", "--db", str(tmp_path / "new.db"))
    from convexp.store.database import head_revision

    assert result.returncode == 0 and f"revision {head_revision()} (newest)" in result.stdout


def test_conv_explain_walks_through_the_5x5_example():
    from scipy.signal import convolve2d, correlate2d

    from convexp.model.convolution import EXAMPLE_IMAGE, EXAMPLE_KERNEL

    result = run_cli("conv", "--explain")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "the output is (5 - 3 + 1) x (5 - 3 + 1) = 3x3" in out
    assert "NOT flipped: this is cross-correlation" in out
    correlation = correlate2d(EXAMPLE_IMAGE, EXAMPLE_KERNEL, mode="valid")
    convolution = convolve2d(EXAMPLE_IMAGE, EXAMPLE_KERNEL, mode="valid")  # true convolution flips the kernel
    assert f"= {correlation[0, 0]:g}\n" in out
    printed = out.split("computed by backend 'numpy':\n")[1].split("True (mathematical)")[0]
    np.testing.assert_array_equal(np.array([row.split() for row in printed.strip().splitlines()], float), correlation)
    flipped = out.split("it would give instead:\n")[1].strip().splitlines()[:3]
    np.testing.assert_array_equal(np.array([row.split() for row in flipped], float), convolution)


def test_conv_prints_a_result_and_refuses_impossible_shapes(tmp_path):
    np.save(tmp_path / "img.npy", np.ones((5, 5), np.float32))
    np.save(tmp_path / "k.npy", np.ones((3, 3), np.float32))
    result = run_cli("conv", "--image", str(tmp_path / "img.npy"), "--kernel", str(tmp_path / "k.npy"))
    assert result.returncode == 0 and "output (1, 1, 3, 3)" in result.stdout and "9." in result.stdout
    np.save(tmp_path / "big.npy", np.ones((7, 7), np.float32))
    assert_one_line_error(
        run_cli("conv", "--image", str(tmp_path / "img.npy"), "--kernel", str(tmp_path / "big.npy")),
        "kernel 7x7 is larger than the 5x5 image with padding 'valid'",
    )
    assert_one_line_error(run_cli("conv", "--random-image", "1,1,x", "--random-kernel", "1,1,3,3"), "--random-image")


def test_files_that_cannot_be_written_give_one_line(tmp_path):
    args = ("conv", "--random-image", "1,1,5,5", "--random-kernel", "1,1,3,3", "--out")
    assert_one_line_error(run_cli(*args, str(tmp_path / "no" / "o.npy")), f"--out {tmp_path / 'no' / 'o.npy'}: the folder")
    assert_one_line_error(run_cli(*args, str(tmp_path / "o.txt")), "use one of .npy")
    # A failure only the system sees (here a dangling link into a missing folder) is one line too.
    (tmp_path / "link.npy").symlink_to(tmp_path / "gone" / "o.npy")
    result = run_cli(*args, str(tmp_path / "link.npy"))
    assert_one_line_error(result, "link.npy", "No such file or directory")
    assert result.returncode == 1


def test_db_delete_asks_then_deletes_and_vacuum_shrinks_the_file(tmp_path):
    # kernels at every step: more than one database page per table, so that there is something to give back
    wide = [{**TINY_DIGITS["layers"][0], "filters": 64, "kernel_size": 5}, *TINY_DIGITS["layers"][1:]]
    tiny_experiments = write_experiments(
        tmp_path / "e.yaml", {"tiny": {**TINY_DIGITS, "layers": wide, "snapshots": {"every": 1}}}
    )
    db = tmp_path / "d.db"
    assert run_cli("run", str(tiny_experiments), "--db", str(db), "--seed", "1").returncode == 0
    assert run_cli("run", str(tiny_experiments), "--db", str(db), "--seed", "2").returncode == 0
    before = sha256(db)
    refused = run_cli("db", "delete", "1", "--db", str(db), input="n\n")
    assert refused.returncode == 1 and "delete 1 run(s)" in refused.stdout and sha256(db) == before
    assert_one_line_error(run_cli("db", "delete", "--db", str(db)), "say which runs to delete")
    assert_one_line_error(run_cli("db", "delete", "1", "9", "--db", str(db), "--yes"), "no run with id 9")
    size = db.stat().st_size
    done = run_cli("db", "delete", "--experiment", "tiny", "--status", "finished", "--db", str(db), "--yes", "--vacuum")
    assert done.returncode == 0 and "deleted 2 run(s)" in done.stdout, done.stderr
    assert json.loads(run_cli("runs", "--db", str(db), "--format", "json").stdout) == []
    assert db.stat().st_size < size
    connection = sqlite3.connect(db)
    assert [
        connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("metrics", "kernel_snapshots", "checkpoints")
    ] == [0, 0, 0]


def test_show_describes_one_run_from_what_was_recorded(existing_db):
    text = run_cli("show", "tiny:numpy", "--db", str(existing_db))
    assert text.returncode == 0, text.stderr
    assert "run 1 tiny/numpy: finished" in text.stdout
    assert "input[1, 8, 8] -> conv1[4, 6, 6] -> maxpool1[4, 3, 3] -> flatten1[36] -> dense1[10]" in text.stdout
    data = json.loads(run_cli("show", "1", "--db", str(existing_db), "--format", "json").stdout)
    connection = sqlite3.connect(existing_db)
    count, first, last = connection.execute(
        "SELECT count(*), min(step), max(step) FROM kernel_snapshots WHERE run_id = 1 AND layer = 'conv1'"
    ).fetchone()
    assert data["snapshots"] == {"conv1": {"count": count, "first_step": first, "last_step": last, "shape": [4, 1, 3, 3]}}
    accuracy_step, accuracy = connection.execute(
        "SELECT step, value FROM metrics WHERE run_id = 1 AND name = 'test_accuracy' ORDER BY step DESC LIMIT 1"
    ).fetchone()
    assert (
        data["last_metrics"]["test_accuracy"]["value"] == accuracy
        and data["last_metrics"]["test_accuracy"]["step"] == accuracy_step
    )
    assert data["checkpoint"]["step"] == data["steps_completed"] == last
    assert (data["kernel_initializer"], data["spec"]["layers"][0]["filters"]) == ("glorot_uniform", 4)
    assert f"snapshots   conv1 [4, 1, 3, 3]: {count} from step {first} to {last}" in text.stdout
    assert_one_line_error(run_cli("show", "7", "--db", str(existing_db)), "no run with id 7")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused_with_one_line(tmp_path, tiny_experiments, url):
    result = run_cli("run", str(tiny_experiments), "--db", url, cwd=tmp_path)
    assert_one_line_error(result, f"--db {url}: an in-memory SQLite database keeps nothing")
    assert list(tmp_path.iterdir()) == [tiny_experiments]


def test_a_bad_override_is_named_as_the_option_it_came_from(existing_db, tiny_experiments):
    before = sha256(existing_db)
    result = run_cli("run", str(tiny_experiments), "--epochs", "0", "--db", str(existing_db))
    assert_one_line_error(result, "experiment 'tiny': field 'epochs'", "(got 0)", "(given on the command line as --epochs)")
    result = run_cli("run", str(tiny_experiments), "--backend", "tensorflw", "--db", str(existing_db))
    assert_one_line_error(result, "unknown backend 'tensorflw'", "--backend")
    assert sha256(existing_db) == before


def test_a_piped_table_is_exactly_what_rich_prints():
    """Piped output is built without rich's per-cell layout (`convexp runs` of 1,000 runs printed in 2 s),
    and must not differ from it by a character: wide characters, brackets, empty cells, titles wider
    and narrower than the table."""
    import io

    from hypothesis import given, settings
    from hypothesis import strategies as st
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from convexp.cli.output import plain_table

    text = st.text(alphabet="ab 0.-_[]/漢字éß│", max_size=12)

    @settings(max_examples=200, deadline=None)
    @given(
        st.integers(1, 5).flatmap(
            lambda n: st.tuples(
                st.lists(text, min_size=n, max_size=n), st.lists(st.lists(text, min_size=n, max_size=n), max_size=6)
            )
        ),
        st.none() | text,
    )
    def check(table, title):
        columns, rows = table
        expected = io.StringIO()
        rich = Table(title=None if title is None else Text(title), show_edge=False, header_style="bold")
        for column in columns:
            rich.add_column(Text(column), overflow="fold")
        for row in rows:
            rich.add_row(*(Text(c) for c in row))
        Console(file=expected, width=10_000).print(rich)
        assert plain_table(columns, rows, title) == expected.getvalue()

    check()
