"""The plugin interface, exercised through a fake backend registered the way a third-party plugin is."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import correlate2d

from convexp.backends import hookspecs
from convexp.backends import registry as plugins
from convexp.backends.hookspecs import hookimpl
from convexp.backends.protocol import Backend
from convexp.errors import BackendUnavailableError, UnknownNameError
from convexp.experiments.runner import execute, prepare_runs
from convexp.store import Store
from tests.conftest import TINY_DIGITS, write_experiments


class FakeBackend(Backend):
    """A backend that 'trains' by shrinking its kernels a little each step: enough to check the plumbing."""

    name = "fake"
    framework = "fakeframework"
    install_hint = "pip install fakeframework"
    default_initializers = ("he_uniform", "zeros")

    def framework_version(self):
        return "9.9"

    def initialize(self, initializer, shape, seed):
        from convexp.model.initializers import draw

        return draw(self.resolve_initializer(initializer), shape, seed)

    def conv2d(self, images, kernel, bias=None, *, stride=1, padding="valid"):
        out = np.stack(
            [[sum(correlate2d(img[c], k[c], mode="valid") for c in range(img.shape[0])) for k in kernel] for img in images]
        )
        return out[:, :, ::stride, ::stride].astype(np.float32)

    def train(self, job, observer):
        from convexp.model.seeding import initial_weights

        weights = initial_weights(job.layers, job.kernel_initializer, job.bias_initializer, job.seed)
        conv = {k: v for k, v in weights.items() if k in job.snapshot_layers}

        def kernels():
            return conv

        observer.on_train_start(kernels)
        step = 0
        for epoch in range(1, job.epochs + 1):
            for _ in range(job.steps_per_epoch):
                step += 1
                conv = {k: type(v)(v.kernel * 0.5, v.bias) for k, v in conv.items()}
                observer.on_step(step, epoch, {"train_loss": 1.0 / step, "train_accuracy": 0.5}, kernels)
            observer.on_epoch_end(epoch, step, {"test_loss": 0.1, "test_accuracy": 0.75, "epoch_seconds": 0.01}, kernels)


class UnavailableBackend(FakeBackend):
    name = "broken"

    def unavailable_reason(self):
        return "fakeframework is not installed: pip install fakeframework"


class FakePlugin:
    @hookimpl
    def register_backends(self, register):
        register(FakeBackend())
        register(UnavailableBackend())


@pytest.fixture
def fake_plugin():
    plugin = FakePlugin()
    plugins.pm.register(plugin, name="fake-plugin")
    yield plugin
    plugins.pm.unregister(plugin)


def test_registered_backends_are_listed_with_versions_and_usability(fake_plugin):
    infos = {i.name: i for i in plugins.describe_backends()}
    assert infos["fake"].usable and infos["fake"].version == "9.9" and infos["fake"].plugin == "fake-plugin"
    assert not infos["broken"].usable and "pip install fakeframework" in infos["broken"].reason
    assert infos["numpy"].usable and infos["numpy"].plugin == "numpy"


def test_register_backends_hook_feeds_the_runner_and_the_store(fake_plugin, tmp_path):
    path = write_experiments(
        tmp_path / "e.yaml", {"f": {**TINY_DIGITS, "backend": "fake", "initializer": "default", "snapshots": {"every": 1}}}
    )
    (run,) = prepare_runs(path)
    assert run.kernel_initializer == "he_uniform"  # `default` resolved to the backend's framework default
    with Store(str(tmp_path / "r.db")) as store:
        (outcome,) = execute([run], store)
        assert outcome.status == "finished" and outcome.test_accuracy == 0.75
        series = store.kernel_series(outcome.run_id, "conv1")
        steps_per_epoch = -(-1437 // 64)
        assert list(series.steps) == list(range(steps_per_epoch + 1))
        np.testing.assert_allclose(series.kernels[1], series.kernels[0] * 0.5)
        record = store.get_run(outcome.run_id)
        assert (record.framework, record.framework_version, record.kernel_initializer) == ("fakeframework", "9.9", "he_uniform")


def test_a_backend_without_checkpoints_resumes_by_starting_over(fake_plugin, tmp_path):
    """A plugin that hands out no training state still resumes correctly: from step 0, nothing twice."""
    from convexp.backends.conformance.checks import CheckSkipped, check_resume
    from convexp.experiments.runner import resume

    with pytest.raises(CheckSkipped, match="no checkpoints handed out"):
        check_resume(FakeBackend())
    path = write_experiments(
        tmp_path / "e.yaml", {"f": {**TINY_DIGITS, "backend": "fake", "epochs": 2, "snapshots": {"every": 1}}}
    )
    with Store(str(tmp_path / "r.db")) as store:
        (outcome,) = execute(prepare_runs(path), store)
        store.finish_run(outcome.run_id, "interrupted")
        assert store.latest_checkpoint(outcome.run_id) is None
        resumed = resume(outcome.run_id, store)
        assert (resumed.run_id, resumed.status) == (outcome.run_id, "finished")
        steps = 2 * -(-1437 // 64)
        assert list(store.kernel_series(outcome.run_id, "conv1").steps) == list(range(steps + 1))
        assert [m.step for m in store.metrics(outcome.run_id, ["train_loss"])] == list(range(1, steps + 1))


def test_unavailable_backend_is_refused_before_anything_runs(fake_plugin, tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"b": {**TINY_DIGITS, "backend": "broken"}})
    with pytest.raises(BackendUnavailableError, match="backend 'broken' is unavailable: fakeframework is not installed"):
        prepare_runs(path)


def test_unknown_backend_lists_the_known_ones(fake_plugin):
    with pytest.raises(UnknownNameError, match=r"unknown backend 'fak' \(did you mean 'fake'\?\)"):
        plugins.get_backend("fak")


def test_a_plugin_that_fails_to_import_is_recorded_not_fatal(monkeypatch):
    from importlib import metadata

    broken = metadata.EntryPoint(name="explodes", value="convexp_no_such_module:plugin", group=plugins.ENTRY_POINT_GROUP)
    real = metadata.entry_points
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: [*real(group=group), broken])
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "plugin_failures", {})
    plugins.load_entry_points()
    infos = {i.name: i for i in plugins.describe_backends()}
    assert not infos["explodes"].usable and "ModuleNotFoundError" in infos["explodes"].reason
    assert infos["numpy"].usable


def test_load_plugins_env_restricts_entry_points(monkeypatch):
    from tests.conftest import run_cli

    result = run_cli("plugins", "--format", "json", env={"CONVEXP_LOAD_PLUGINS": ""})
    assert result.returncode == 0 and json.loads(result.stdout) == []
    result = run_cli("plugins", "--format", "json", env={"CONVEXP_LOAD_PLUGINS": "numpy"})
    assert [b["name"] for b in json.loads(result.stdout)] == ["numpy"]


def test_every_hook_has_a_test():
    """Fails when a hookspec is added without a test in this file that uses it."""
    specs = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "convexp_spec")]
    assert specs, "no hookspecs found"
    source = Path(__file__).read_text()
    tested = {
        node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }
    for spec in specs:
        assert any(spec in name for name in tested), f"hook {spec} has no test named after it"


class MisspelledPlugin:
    @hookimpl
    def register_backend(self, register):  # one letter short of the hook's name
        register(FakeBackend())


def test_a_misspelled_hook_implementation_is_an_error_shown_by_convexp_plugins():
    plugin = MisspelledPlugin()
    plugins.pm.register(plugin, name="misspelled")
    try:
        backends = plugins.get_backends()
        assert "fake" not in backends and "numpy" in backends
        assert not plugins.pm.has_plugin("misspelled")
        infos = {i.name: i for i in plugins.describe_backends()}
        assert not infos["misspelled"].usable
        assert "unknown hook 'register_backend'" in infos["misspelled"].reason
        assert "the hooks convexp knows: register_backends" in infos["misspelled"].reason
    finally:
        plugins.plugin_failures.pop("misspelled", None)
        if plugins.pm.is_registered(plugin):
            plugins.pm.unregister(plugin)


def test_register_backends_is_called_through_pluggy_once_per_plugin(fake_plugin):
    """Which plugin registered which backend comes from pluggy's hook implementations."""
    impls = {impl.plugin_name for impl in plugins.pm.hook.register_backends.get_hookimpls()}
    assert {"numpy", "fake-plugin"} <= impls
    plugins.get_backends()
    assert plugins._backend_owners["fake"] == "fake-plugin" and plugins._backend_owners["numpy"] == "numpy"
