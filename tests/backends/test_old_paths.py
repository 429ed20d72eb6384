"""The module paths of earlier versions keep working for code written against them (convexp/_moved.py), and a
backend written from the plugin guide as it stood, importing those paths, still installs, passes `convexp check`
(which holds it to the numpy reference) and trains."""

from __future__ import annotations

import ast
import importlib
import json

import pytest

from convexp._moved import MOVED
from tests.conftest import REPO, TINY_DIGITS, install_plugin, run_cli, write_experiments

#: What a third party imported from the old paths (the plugin guide, the example plugin, user scripts), and where
#: each name lives now.
OLD_NAMES = [
    ("convexp.backend", "Backend", "convexp.backends.protocol"),
    ("convexp.hookspecs", "hookimpl", "convexp.backends.hookspecs"),
    ("convexp.training", "SGD", "convexp.model.optimizers"),
    ("convexp.training", "TrainingJob", "convexp.backends.trainer"),
    ("convexp.training", "KernelSnapshot", "convexp.model.weights"),
    ("convexp.training", "run_epochs", "convexp.backends.trainer"),
    ("convexp.types", "KernelSnapshot", "convexp.model.weights"),
    ("convexp.layers", "Conv", "convexp.model.layers"),
    ("convexp.layers", "plan_recorded", "convexp.analysis.recorded_plan"),
    ("convexp.layers", "format_parameter_table", "convexp.analysis.plan_text"),
    ("convexp.initializers", "draw", "convexp.model.initializers"),
    ("convexp.seeding", "initial_weights", "convexp.model.seeding"),
    ("convexp.conformance", "CHECKS", "convexp.backends.conformance.checks"),
    ("convexp.conformance", "CheckSkipped", "convexp.backends.conformance.kit"),
    ("convexp.conformance", "tiny_job", "convexp.backends.conformance.kit"),
    ("convexp.plugins", "get_backend", "convexp.backends.registry"),
    ("convexp.spec", "RunSpec", "convexp.experiments.spec"),
    ("convexp.spec", "validate_file", "convexp.experiments.grids"),
    ("convexp.spec", "read_file", "convexp.experiments.experiments_file"),
    ("convexp.runner", "execute", "convexp.experiments.runner"),
    ("convexp.storage", "estimate_grid", "convexp.experiments.estimate_disk"),
    ("convexp.convolution", "format_explanation", "convexp.cli.conv_text"),
]


@pytest.mark.parametrize(("old", "name", "home"), OLD_NAMES, ids=[f"{o}.{n}" for o, n, _ in OLD_NAMES])
def test_an_old_path_gives_the_same_object_as_its_new_home(old, name, home):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(home), name)


def test_a_renamed_name_is_still_found_under_its_old_path():
    import convexp.runner

    from convexp.experiments import runner

    assert (convexp.runner.plan_runs, convexp.runner.PlannedRun, convexp.runner.PlannedRuns) == (
        runner.prepare_runs,
        runner.PreparedRun,
        runner.PreparedRuns,
    )
    assert not hasattr(runner, "plan_runs")  # the new path has the new names only


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_path_imports(old):
    module = importlib.import_module(old)
    assert dir(module), old
    if len(MOVED[old]) == 1:  # moved whole: the very module, under its new name
        assert module is importlib.import_module(MOVED[old][0])
        assert module.__spec__.name == MOVED[old][0]


def test_nothing_in_convexp_or_its_backends_imports_an_old_path():
    used = set()
    for root in (REPO / "convexp", REPO / "plugins"):
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module in MOVED:
                    used.add(f"{path.relative_to(REPO)}: {node.module}")
                elif isinstance(node, ast.Import):
                    used.update(f"{path.relative_to(REPO)}: {a.name}" for a in node.names if a.name in MOVED)
    assert used == set()


@pytest.fixture(scope="module")
def old_paths_site(tmp_path_factory):
    """The backend written against the old paths, installed as a third party's would be (non-editable)."""
    return install_plugin(tmp_path_factory, REPO / "tests" / "backends" / "old-paths-backend")


def test_a_backend_written_against_the_old_paths_passes_convexp_check(old_paths_site):
    source = REPO / "tests" / "backends" / "old-paths-backend" / "convexp_old_paths_backend"
    imported = {
        node.module
        for path in source.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("convexp.")
    }
    assert imported and imported <= set(MOVED), imported  # it really uses the old paths, and only those
    result = run_cli("check", "oldpaths", "--format", "json", env=old_paths_site)
    assert result.returncode == 0, result.stdout + result.stderr
    results = {r["check"]: r["result"] for r in json.loads(result.stdout)}
    # every check of what it builds passes -- among them the ones that train it beside the numpy reference
    assert {"one-step", "momentum", "conv", "initializers", "trainer", "reproducible", "resume"} <= {
        name for name, outcome in results.items() if outcome == "pass"
    }, results
    assert set(results.values()) <= {"pass", "skipped"}, results


def test_a_backend_written_against_the_old_paths_trains_an_experiment(old_paths_site, tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"old": {**TINY_DIGITS, "backend": "oldpaths", "epochs": 1}})
    result = run_cli("run", str(path), "--db", str(tmp_path / "r.db"), env=old_paths_site)
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(run_cli("runs", "--format", "json", "--db", str(tmp_path / "r.db")).stdout)
    assert run["backend"] == "oldpaths" and run["status"] == "finished"
