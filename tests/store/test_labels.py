"""Run names, tags and notes (YAML, tracking API, `convexp name/tag/note`, `runs --tag`), and the wall time of
every metric value."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from tests.conftest import TINY_DIGITS, run_cli, write_experiments


def _labels(db, run_id):
    row = sqlite3.connect(db).execute("SELECT name, tags, notes FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row[0], None if row[1] is None else json.loads(row[1]), row[2]


def test_an_experiments_tags_and_notes_label_each_of_its_runs_and_the_cli_changes_them(tmp_path):
    experiments = write_experiments(
        tmp_path / "experiments.yaml",
        {"tagged": {**TINY_DIGITS, "max_steps": 2, "seed": [1, 2], "tags": ["baseline", "sgd"], "notes": "first try"}},
    )
    db = tmp_path / "r.db"
    ran = run_cli("run", str(experiments), "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    assert _labels(db, 1) == _labels(db, 2) == (None, ["baseline", "sgd"], "first try")
    # the labels are not part of what a run was asked to do: its spec (and so its parameters) lacks them
    spec = json.loads(sqlite3.connect(db).execute("SELECT spec FROM runs WHERE id = 1").fetchone()[0])
    assert "tags" not in spec and "notes" not in spec

    assert (
        run_cli("tag", "2", "best", "sgd", "--db", str(db)).stdout.strip() == "run 2: tags baseline, sgd, best; notes: first try"
    )
    assert run_cli("tag", "2", "baseline", "--remove", "--db", str(db)).returncode == 0
    assert run_cli("note", "2", "-", "--db", str(db), input="line one\nline two\n").returncode == 0
    assert run_cli("name", "2", "seed two", "--db", str(db)).returncode == 0
    assert _labels(db, 2) == ("seed two", ["sgd", "best"], "line one\nline two")
    assert _labels(db, 1) == (None, ["baseline", "sgd"], "first try")  # the other run is untouched

    listed = json.loads(run_cli("runs", "--tag", "sgd", "--tag", "best", "--format", "json", "--db", str(db)).stdout)
    assert [(r["id"], r["name"], r["tags"]) for r in listed] == [(2, "seed two", "sgd,best")]
    shown = json.loads(run_cli("show", "2", "--format", "json", "--db", str(db)).stdout)
    assert (shown["name"], shown["tags"], shown["notes"]) == ("seed two", ["sgd", "best"], "line one\nline two")

    # bad input: one line naming the value, exit 1, nothing changed
    rows = lambda: list(sqlite3.connect(db).iterdump())  # noqa: E731
    before = rows()
    # (scripts/probe.py tries the rest: a space in a tag, an empty name, a name and --clear, a run not there)
    for args in (("tag", "2", "a,b"), ("name", "2", "x" * 201)):
        result = run_cli(*args, "--db", str(db))
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert rows() == before


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("[two words]", "field 'tags': tag 'two words': a tag cannot hold spaces"),
        ("{a: 1}", "field 'tags': a list of tags"),
        ("[1]", "field 'tags': a tag is a string, not int 1"),
    ],
)
def test_a_bad_tag_in_the_experiments_file_is_one_line_naming_the_field(tmp_path, tags, message):
    from convexp.errors import SpecError
    from convexp.experiments.grids import resolve_runs

    path = tmp_path / "experiments.yaml"
    path.write_text(
        f"experiments:\n  tiny:\n    dataset: digits\n    layers: [{{type: dense, units: 10}}]\n    epochs: 1\n    tags: {tags}\n"
    )
    with pytest.raises(SpecError) as error:
        resolve_runs(path)
    assert str(error.value).startswith(f"{path}: experiment 'tiny': {message}")


def test_tracked_runs_take_a_name_tags_and_notes_and_every_value_its_wall_time(tmp_path):
    import convexp

    db = tmp_path / "t.db"
    with pytest.raises(ValueError, match="a tag cannot hold spaces"):
        convexp.track("loop", db, tags=["not one"])
    before = time.time()
    with convexp.track("loop", db, name="my loop", tags=["mine", "mine", "v2"], notes="by hand") as run:
        for step in range(1, 4):
            run.log_metrics({"train_loss": 1.0 / step}, step=step)
            time.sleep(0.05)
    after = time.time()
    assert _labels(db, 1) == ("my loop", ["mine", "v2"], "by hand")
    rows = sqlite3.connect(db).execute("SELECT step, wall_time FROM metrics ORDER BY step").fetchall()
    assert [s for s, _ in rows] == [1, 2, 3]
    times = [t for _, t in rows]
    assert before <= times[0] < times[1] < times[2] <= after
    assert times[2] - times[0] >= 0.09  # each value carries the time it was logged, not the time it was written


def test_labels_and_wall_times_through_the_library(tmp_path):
    from convexp.errors import StoreError
    from convexp.experiments.runner import execute, prepare_runs
    from convexp.store import Store
    from convexp.store.labels import change_tags, set_name, set_notes

    experiments = write_experiments(tmp_path / "experiments.yaml", {"tiny": {**TINY_DIGITS, "max_steps": 3, "log_every": 1}})
    with Store(str(tmp_path / "r.db")) as store:
        before = time.time()
        (outcome,) = execute(prepare_runs(experiments), store)
        after = time.time()
        metrics = store.metrics(outcome.run_id)
        assert metrics and all(before <= m.wall_time <= after for m in metrics)
        frame = store.metrics_frame(outcome.run_id)
        assert list(frame.columns) == ["step", "epoch", "name", "value", "wall_time"]
        run = change_tags(store, outcome.run_id, add=["a", "b", "a"])
        assert run.tags == ["a", "b"]
        assert change_tags(store, outcome.run_id, add=["c"], remove=["a"]).tags == ["b", "c"]
        assert change_tags(store, outcome.run_id, remove=["b", "c", "absent"]).tags is None
        assert set_name(store, outcome.run_id, "n").name == "n" and set_name(store, outcome.run_id, None).name is None
        assert set_notes(store, outcome.run_id, "").notes is None
        with pytest.raises(StoreError, match="control characters"):
            set_name(store, outcome.run_id, "two\nlines")
