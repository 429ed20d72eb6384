"""Lists anywhere and `--set`: a list in a nested field, a `grid:` block of dotted paths (a layer's fields too), a
whole-number range, and any field set from the command line -- each run's recorded spec holding its concrete
values, counted and sized as today's grids are, and bad input one line naming the field."""

from __future__ import annotations

import json
import time

import pytest

from convexp.errors import SpecError
from convexp.experiments import estimate_disk
from convexp.experiments.grids import resolve_grids, resolve_runs
from convexp.experiments.overrides import Axis, parse_set, split_commas
from tests.conftest import TINY_DIGITS, one_line_error, run_cli, write_experiments

BASE = {**TINY_DIGITS, "max_steps": 2}


def _runs(tmp_path, experiment, overrides=None):
    path = write_experiments(tmp_path / "e.yaml", {"x": experiment})
    return [run.spec for run in resolve_runs(path, ["x"], overrides)]


def test_a_list_in_a_nested_field_is_an_axis_and_each_spec_holds_its_value(tmp_path):
    specs = _runs(tmp_path, {**BASE, "optimizer": {"name": "adam", "learning_rate": [0.001, 0.01]}, "seed": [0, 1]})
    assert [(s.optimizer.name, s.optimizer.learning_rate, s.seed) for s in specs] == [
        ("adam", 0.001, 0),
        ("adam", 0.001, 1),
        ("adam", 0.01, 0),
        ("adam", 0.01, 1),
    ]


def test_a_grid_block_reaches_a_layers_fields(tmp_path):
    specs = _runs(tmp_path, {**BASE, "grid": {"layers.0.filters": [2, 8], "optimizer.momentum": [0.0, 0.5]}})
    assert [(s.layers[0].filters, s.optimizer.momentum) for s in specs] == [(2, 0.0), (2, 0.5), (8, 0.0), (8, 0.5)]
    assert [s.plan()[0].kernel_shape for s in specs[::2]] == [(2, 1, 3, 3), (8, 1, 3, 3)]


def test_a_field_that_takes_a_list_is_an_axis_only_given_a_list_of_lists(tmp_path):
    one = _runs(tmp_path, {**BASE, "snapshots": {"layers": ["conv1"]}})
    assert [s.snapshots.layers for s in one] == [["conv1"]]
    two = _runs(tmp_path, {**BASE, "snapshots": {"every": [1, 2], "layers": [["conv1"], None]}})
    assert [(s.snapshots.every, s.snapshots.layers) for s in two] == [(1, ["conv1"]), (1, None), (2, ["conv1"]), (2, None)]


def test_a_range_is_an_axis_counted_without_being_listed(tmp_path):
    specs = _runs(tmp_path, {**BASE, "seed": {"range": [3, 9, 2]}})
    assert [s.seed for s in specs] == [3, 5, 7]
    path = write_experiments(
        tmp_path / "big.yaml", {"big": {**BASE, "seed": {"range": [0, 10**9]}, "grid": {"layers.0.filters": [2, 4]}}}
    )
    started = time.perf_counter()
    (grid,) = resolve_grids(path, ["big"])
    assert len(grid) == 2 * 10**9 and grid.sizes() == {"seed": 10**9, "layers.0.filters": 2}
    expected = estimate_disk.estimate_grid(grid)
    assert expected.runs == 2 * 10**9
    first = [run.spec for run, _ in zip(grid, range(3))]
    assert [(s.seed, s.layers[0].filters) for s in first] == [(0, 2), (0, 4), (1, 2)]
    assert time.perf_counter() - started < 600  # a bound against hanging, not a timing: it never lists the range


def test_a_nested_list_grid_and_its_set_twin_give_identical_specs(tmp_path):
    in_file = _runs(
        tmp_path,
        {
            **BASE,
            "optimizer": {"name": "sgd", "learning_rate": [0.01, 0.1], "momentum": 0.9},
            "grid": {"layers.0.filters": [2, 4]},
        },
    )
    from_command_line = _runs(
        tmp_path,
        BASE,
        [parse_set("optimizer.learning_rate=0.01,0.1"), parse_set("layers.0.filters=2,4")],
    )
    assert len(in_file) == 4
    assert [s.model_dump() for s in from_command_line] == [s.model_dump() for s in in_file]


def test_set_inside_the_default_optimizer_keeps_it_and_reaches_every_optimizer_of_an_axis(tmp_path):
    without = {key: value for key, value in BASE.items() if key != "optimizer"}
    (spec,) = _runs(tmp_path, without, [parse_set("optimizer.learning_rate=0.05")])
    assert (spec.optimizer.name, spec.optimizer.learning_rate) == ("adam", 0.05)
    both = {**BASE, "optimizer": [{"name": "sgd", "learning_rate": 0.1}, {"name": "adam"}]}
    specs = _runs(tmp_path, both, [parse_set("optimizer.learning_rate=0.5")])
    assert [(s.optimizer.name, s.optimizer.learning_rate) for s in specs] == [("sgd", 0.5), ("adam", 0.5)]


def test_a_value_set_replaces_the_list_it_overrides(tmp_path):
    specs = _runs(
        tmp_path,
        {**BASE, "seed": [0, 1, 2], "grid": {"layers.0.filters": [2, 4]}},
        [parse_set("seed=7"), parse_set("layers.0.filters=3")],
    )
    assert [(s.seed, s.layers[0].filters) for s in specs] == [(7, 3)]


def test_set_values_are_yaml_and_commas_inside_brackets_or_quotes_do_not_split():
    assert parse_set("optimizer.learning_rate=1e-3").value == 0.001
    assert parse_set("shuffle=false").value is False
    assert parse_set("augmentation={shift: 2, flip: true}").value == {"shift": 2, "flip": True}
    assert parse_set("layers.0.kernel_size=[3, 3]").value == [3, 3]
    assert parse_set("seed=0,1,2").value == Axis((0, 1, 2))
    assert parse_set("layers.0.kernel_size=[3,3],[5,5]").value == Axis(([3, 3], [5, 5]))
    assert split_commas("a,'b,c',{d: 1, e: 2}") == ["a", "'b,c'", "{d: 1, e: 2}"]
    for bad in ("seed", "=3", "seed=", "a..b=1", "seed=1,,2", "seed=[1"):
        with pytest.raises(SpecError, match="--set"):
            parse_set(bad)


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        ({"optimizer": {"name": "adam", "learning_rate": []}}, "field 'optimizer.learning_rate': an empty list gives no runs"),
        ({"seed": {"range": [5, 5]}}, "field 'seed': range [5, 5] gives no values"),
        ({"seed": {"range": [0, 2.5]}}, "field 'seed': range takes [start, stop] or [start, stop, step], whole numbers"),
        ({"grid": {"layers.0.filters": 8}}, "field 'grid.layers.0.filters': a list of values"),
        ({"grid": {"layers.9.filters": [8]}}, "field 'grid.layers.9.filters': '9' is not a layer of layers (0 to 3)"),
        ({"grid": {"optimizer.lr": [0.1]}}, "field 'grid.optimizer.lr': optimizer has no field 'lr'"),
        ({"grid": {"layers.0.filtres": [2]}}, "did you mean 'filters'?"),
        ({"seed": [0, 1], "grid": {"seed": [2, 3]}}, "'seed' is a list in the experiment already; give it once"),
        ({"grid": {"layers.0.filters": [2, 0]}}, "field 'layers.0.conv.filters': Input should be greater than 0 (got 0)"),
    ],
)
def test_bad_axes_are_one_line_naming_the_field(tmp_path, experiment, message):
    with pytest.raises(SpecError) as error:
        _runs(tmp_path, {**BASE, **experiment})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_command_line_sets_fields_and_says_so(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"x": BASE})
    db = tmp_path / "r.db"
    result = run_cli(
        "run", str(path), "--db", str(db), "--set", "optimizer.learning_rate=0.01,0.05", "--set", "layers.0.filters=2"
    )
    assert result.returncode == 0, result.stderr
    assert "this selection (--set optimizer.learning_rate=0.01,0.05 --set layers.0.filters=2): 2 run(s)" in result.stderr
    runs = json.loads(run_cli("runs", "-e", "x", "--format", "json", "--db", str(db)).stdout)
    assert sorted(r["optimizer.learning_rate"] for r in runs) == [0.01, 0.05]  # what varies among them
    where = json.loads(run_cli("runs", "--where", "optimizer.learning_rate=0.05", "--format", "json", "--db", str(db)).stdout)
    assert [r["id"] for r in where] == [r["id"] for r in runs if r["optimizer.learning_rate"] == 0.05]
    shown = json.loads(run_cli("show", str(runs[0]["id"]), "--format", "json", "--db", str(db)).stdout)
    assert shown["spec"]["layers"][0]["filters"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "optimizer.lerning_rate=0.1"],
            "field 'optimizer.lerning_rate': optimizer has no field 'lerning_rate' (did you mean 'learning_rate'?) (given on the command line as --set optimizer.lerning_rate=0.1)",
        ),
        (
            ["--set", "epochs=0"],
            "field 'epochs': Input should be greater than or equal to 1 (got 0) (given on the command line as --set epochs=0)",
        ),
        (["--set", "optimizer.learning_rate=fast"], "(given on the command line as --set optimizer.learning_rate=fast)"),
        (["--set", "seed"], "--set 'seed': write PATH=VALUE"),
    ],
)
def test_bad_settings_are_one_line_and_nothing_is_written(tmp_path, args, message):
    path = write_experiments(tmp_path / "e.yaml", {"x": BASE})
    for command in (["run", str(path), "--db", str(tmp_path / "r.db")], ["validate", str(path)]):
        result = run_cli(*command, *args)
        one_line_error(result, message)
    assert not (tmp_path / "r.db").exists()


def test_validate_takes_set_too(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"x": BASE})
    result = run_cli("validate", str(path), "--set", "seed=0,1,2", "--set", "layers.0.filters=6")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("x: 3 run(s), digits, input[1, 8, 8] -> conv1[6, 6, 6]")


def test_a_nested_grid_is_sized_as_its_runs_are(tmp_path):
    """The estimate from the axes' sizes equals the sum over the expanded runs' specs (estimate, spec by spec)."""
    experiment = {
        **BASE,
        "snapshots": {"every": [1, 3]},
        "optimizer": {"name": "sgd", "learning_rate": [0.1, 0.2, 0.3]},
        "grid": {"layers.0.filters": [2, 4], "max_steps": [2, 5]},
    }
    path = write_experiments(tmp_path / "e.yaml", {"x": experiment})
    (grid,) = resolve_grids(path, ["x"])
    assert len(grid) == 24
    assert estimate_disk.estimate_grid(grid) == estimate_disk.estimate(run.spec for run in grid)
