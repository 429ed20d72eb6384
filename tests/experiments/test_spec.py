"""The experiments YAML: what is accepted, how grids expand, and the one-line errors for what is not."""

from __future__ import annotations

import pytest

from convexp.errors import SpecError
from convexp.experiments.grids import resolve_runs, validate_file
from tests.conftest import REPO, TINY_DIGITS, write_experiments


def spec_file(tmp_path, **changes):
    body = {**TINY_DIGITS, **changes}
    return write_experiments(tmp_path / "exp.yaml", {"tiny": body})


def test_the_repository_examples_are_valid():
    experiments = validate_file(REPO / "experiments.yaml")
    assert {"quickstart", "mnist-keras-convnet"} <= set(experiments)
    keras = experiments["mnist-keras-convnet"].spec()
    shapes = [p.output_shape for p in keras.plan()]
    assert shapes == [(32, 26, 26), (32, 13, 13), (64, 11, 11), (64, 5, 5), (1600,), (1600,), (10,)]
    assert keras.optimizer.name == "adam" and keras.optimizer.learning_rate == 0.001 and keras.batch_size == 128


def test_defaults_and_default_experiment(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"a": TINY_DIGITS, "b": {**TINY_DIGITS, "seed": 5}}, default="b")
    (run,) = resolve_runs(path)
    assert run.experiment == "b" and run.spec.seed == 5
    assert run.spec.initializer == "glorot_uniform" and run.spec.bias_initializer == "zeros"
    assert run.spec.snapshots.every is None and run.spec.snapshots.epoch_end
    assert run.spec.snapshot_layers() == ("conv1",)


def test_grid_expands_every_combination_in_order(tmp_path):
    path = spec_file(tmp_path, seed=[0, 1, 2], initializer=["he_normal", "orthogonal"])
    runs = resolve_runs(path)
    assert [(r.spec.seed, r.spec.initializer) for r in runs] == [
        (0, "he_normal"),
        (0, "orthogonal"),
        (1, "he_normal"),
        (1, "orthogonal"),
        (2, "he_normal"),
        (2, "orthogonal"),
    ]


def test_optimizers_can_form_a_grid(tmp_path):
    path = spec_file(tmp_path, optimizer=[{"name": "sgd", "learning_rate": 0.1}, {"name": "adam"}])
    assert [r.spec.optimizer.name for r in resolve_runs(path)] == ["sgd", "adam"]


def test_overrides_replace_fields_before_expansion(tmp_path):
    path = spec_file(tmp_path, seed=[0, 1])
    runs = resolve_runs(path, overrides={"seed": 9, "epochs": 3})
    assert [(r.spec.seed, r.spec.epochs) for r in runs] == [(9, 3)]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epohcs": 3}, r"field 'epohcs': unknown field \(did you mean 'epochs'\?\)"),
        ({"epochs": "many"}, r"field 'epochs': Input should be a valid integer.*'many'"),
        ({"epochs": 0}, r"field 'epochs': Input should be greater than or equal to 1"),
        ({"epochs": -2}, r"field 'epochs'"),
        ({"backend": "nunpy"}, r"field 'backend': unknown backend 'nunpy' \(did you mean 'numpy'\?\)"),
        ({"initializer": "glorot"}, r"field 'initializer': unknown initializer 'glorot'"),
        ({"dataset": "mnst"}, r"field 'dataset': unknown dataset 'mnst' \(did you mean 'mnist'\?\)"),
        ({"initializer": "default"}, r"backend 'numpy' has no framework default"),
        ({"optimizer": {"name": "rmsprop"}}, r"field 'optimizer'"),
        ({"optimizer": {"name": "sgd", "lr": 0.1}}, r"field 'optimizer.sgd.lr': unknown field \(did you mean"),
        ({"seed": []}, r"field 'seed': an empty list gives no runs"),
        ({"snapshots": {"every": 0}}, r"field 'snapshots.every'"),
        ({"snapshots": {"layers": ["conv9"]}}, r"'conv9' is not a conv layer"),
        (
            {"layers": [{"type": "conv", "filters": 2, "kernel_size": 9}, {"type": "flatten"}, {"type": "dense", "units": 10}]},
            r"layer 1 \(conv1\): kernel 9x9 is larger than its 8x8 input with padding 'valid'",
        ),
        ({"layers": [{"type": "flatten"}, {"type": "dense", "units": 7}]}, r"has 7 units but the dataset has 10 classes"),
        ({"layers": [{"type": "dense", "units": 10}]}, r"add a flatten layer"),
        ({"layers": [{"type": "conv", "filters": 2, "kernel_sz": 3}]}, r"did you mean 'kernel_size'"),
    ],
)
def test_bad_specs_give_one_line_naming_file_experiment_and_field(tmp_path, changes, message):
    from convexp.backends.registry import get_backends

    path = spec_file(tmp_path, **changes)
    with pytest.raises(SpecError, match=message) as info:
        resolve_runs(path, backends=get_backends())
    text = str(info.value)
    assert text.startswith(f"{path}: experiment 'tiny': ")
    assert "\n" not in text


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("experiments:\n  a:\n    dataset: digits\n   epochs: [1, 2\n")
    with pytest.raises(SpecError, match=rf"{path}:\d+:\d+: malformed YAML"):
        resolve_runs(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "must be a mapping"),
        ("experiment:\n  a: {}\n", r"unknown top-level key 'experiment' \(did you mean 'experiments'\?\)"),
        ("experiments: {}\n", "non-empty mapping"),
        ("experiments:\n  a: 3\n", "experiment 'a' must be a mapping"),
        ("default: b\nexperiments:\n  a: {dataset: digits}\n", "default experiment 'b' is not defined"),
    ],
)
def test_bad_file_outline(tmp_path, text, message):
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        resolve_runs(path)


def test_unknown_experiment_and_missing_file(tmp_path, tiny_experiments):
    with pytest.raises(SpecError, match=r"no experiment 'tinny' \(did you mean 'tiny'\?\)"):
        resolve_runs(tiny_experiments, ["tinny"])
    with pytest.raises(SpecError, match="no such experiments file"):
        resolve_runs(tmp_path / "absent.yaml")


def test_reading_experiments_needs_no_backend(tmp_path):
    """A spec's shape is checked without the plugins; whether its backend is installed is checked when it is
    planned against the backends there are."""
    from convexp.backends.registry import get_backend

    path = spec_file(tmp_path, backend="not-installed-here")
    (run,) = resolve_runs(path)
    assert run.spec.backend == "not-installed-here"
    with pytest.raises(SpecError, match=r"field 'backend': unknown backend 'not-installed-here'; known: numpy"):
        resolve_runs(path, backends={"numpy": get_backend("numpy")})


def test_named_layer_lists_are_a_grid_over_architecture_and_a_wrong_name_is_refused(tmp_path):
    from tests.conftest import run_cli

    small = [{"type": "conv", "filters": 2, "kernel_size": 3}, {"type": "flatten"}, {"type": "dense", "units": 10}]
    normed = [small[0], {"type": "batch_norm"}, *small[1:]]
    path = write_experiments(tmp_path / "e.yaml", {"pair": {**TINY_DIGITS, "layers": {"plain": small, "normed": normed}}})
    runs = resolve_runs(path)
    assert [(r.spec.architecture, [layer.type for layer in r.spec.layers]) for r in runs] == [
        ("plain", ["conv", "flatten", "dense"]),
        ("normed", ["conv", "batch_norm", "flatten", "dense"]),
    ]
    one = write_experiments(tmp_path / "one.yaml", {"pair": {**TINY_DIGITS, "layers": {"plain": small}, "architecture": "plain"}})
    assert len(resolve_runs(one)) == 1
    for wrong, message in (
        (
            {"layers": {"plain": small}, "architecture": "fancy"},
            "field 'architecture': 'fancy' is not one of the named layer lists (plain)",
        ),
        ({"layers": small, "architecture": "plain"}, "'layers' is a single list"),
    ):
        bad = write_experiments(tmp_path / "bad.yaml", {"bad": {**TINY_DIGITS, **wrong}})
        result = run_cli("validate", str(bad))
        assert result.returncode != 0 and message in result.stderr, result.stderr
