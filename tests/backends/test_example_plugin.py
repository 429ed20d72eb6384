"""The example plugin under examples/ installs as a third party's would, passes `convexp check`, and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY_DIGITS, install_plugin, run_cli, write_experiments


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """The example package installed (non-editable, no dependencies) into a folder of its own."""
    return install_plugin(tmp_path_factory, REPO / "examples" / "convexp-example-backend")


def test_example_plugin_is_discovered_through_its_entry_point(example_site):
    backends = {b["name"]: b for b in json.loads(run_cli("plugins", "--format", "json", env=example_site).stdout)}
    assert backends["example"]["usable"] and backends["example"]["plugin"] == "example"
    assert backends["example"]["plugin_version"] == "0.1.0"


def test_example_plugin_passes_convexp_check(example_site):
    result = run_cli("check", "example", "--format", "json", env=example_site)
    assert result.returncode == 0, result.stdout + result.stderr
    results = {r["check"]: r for r in json.loads(result.stdout)}
    from convexp.backends.conformance.checks import CHECKS

    # the example implements convexp's first vocabulary: the checks of what it does not build are skipped, saying
    # what it lacks (`convexp plugins` lists the same), and every other check passes
    beyond = {
        "activations",
        "average-pooling",
        "dilation-groups",
        "batch-norm",
        "residual",
        "augmentation",
        "weight-decay",
        "adamw",
        "schedule",
        "clipping-smoothing",
    }
    assert {name: r["result"] for name, r in results.items()} == {
        check.name: "skipped" if check.name in beyond else "pass" for check in CHECKS
    }
    assert results["activations"]["detail"].startswith(
        "the backend does not implement activation, activation elu, activation gelu"
    )
    assert results["adamw"]["detail"] == "the backend does not implement optimizer adamw"
    lacks = next(b for b in json.loads(run_cli("plugins", "--format", "json", env=example_site).stdout) if b["name"] == "example")
    assert "optimizer adamw" in lacks["lacks"] and "global_avgpool" in lacks["lacks"]
    # the example's own trainer restores its whole state, so its runs resume exactly
    assert results["resume"]["detail"].endswith("max abs difference 0.0e+00"), results["resume"]


def test_example_plugin_passes_its_own_tests(example_site):
    """The plugin's own test suite (examples/convexp-example-backend/tests) runs the importable checks."""
    tests = REPO / "examples" / "convexp-example-backend" / "tests"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tests.parent,
        env={**os.environ, **example_site},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "failed" not in result.stdout and "passed" in result.stdout


def test_a_plugin_test_written_from_the_first_guide_sees_checks_it_cannot_run_as_skips(example_site, tmp_path):
    """The plugin guide once said: call run_check for every check in CHECKS. Checks added since, of features the
    plugin does not declare, raise CheckSkipped -- a unittest.SkipTest -- which pytest reports as a skip, so such a
    test keeps passing as convexp adds checks, without the plugin changing."""
    (tmp_path / "test_first_guide.py").write_text(
        "import pytest\n"
        "from convexp.backends.conformance.checks import CHECKS, run_check\n\n\n"
        '@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)\n'
        "def test_conformance(check):\n"
        '    run_check(check, "example")\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "test_first_guide.py"],
        cwd=tmp_path,
        env={**os.environ, **example_site},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " failed" not in result.stdout and " skipped" in result.stdout, result.stdout[-1000:]
    assert "the backend does not implement optimizer adamw" in result.stdout


def test_example_plugin_runs_an_experiment(example_site, tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"ex": {**TINY_DIGITS, "backend": "example", "epochs": 2}})
    result = run_cli("run", str(path), "--db", str(tmp_path / "r.db"), env=example_site)
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(run_cli("runs", "--format", "json", "--db", str(tmp_path / "r.db")).stdout)
    assert run["backend"] == "example" and run["status"] == "finished" and run["test_accuracy"] > 0.5  # chance is 0.1


def test_check_fails_loudly_for_a_broken_backend(tmp_path):
    """A backend whose conv flips the kernel (true convolution) must fail the conv check."""
    plugin = tmp_path / "flipped_plugin"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(
        "from convexp.backends.hookspecs import hookimpl\n"
        "from convexp_plugins.numpy_backend.backend import NumpyBackend\n"
        "class Flipped(NumpyBackend):\n"
        "    name = 'flipped'\n"
        "    def conv2d(self, images, kernel, bias=None, **kw):\n"
        "        return super().conv2d(images, kernel[:, :, ::-1, ::-1].copy(), bias, **kw)\n"
        "@hookimpl\n"
        "def register_backends(register):\n"
        "    register(Flipped())\n"
    )
    code = (
        "import sys; from convexp.backends.registry import pm; import flipped_plugin; pm.register(flipped_plugin, name='flipped');"
        "from convexp.cli import main; sys.argv = ['convexp', 'check', 'flipped', '--format', 'json']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    results = {r["check"]: r for r in json.loads(result.stdout)}
    assert results["conv"]["result"] == "FAIL" and "Mismatched elements" in results["conv"]["detail"]
    assert results["trainer"]["result"] == "pass"


def test_checks_fail_a_wrong_optimizer_step_even_under_python_O(tmp_path):
    """A backend whose Nesterov is plain momentum and whose Adam uses the wrong beta_1 fails exactly those checks,
    also with assert statements compiled away (python -O)."""
    plugin = tmp_path / "sloppy_plugin"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(
        "from dataclasses import replace\n"
        "from convexp.backends.hookspecs import hookimpl\n"
        "from convexp_plugins.numpy_backend.backend import NumpyBackend\n"
        "class Sloppy(NumpyBackend):\n"
        "    name = 'sloppy'\n"
        "    def train(self, job, observer):\n"
        "        o = job.optimizer\n"
        "        if o.name == 'sgd' and o.nesterov:\n"
        "            o = o.model_copy(update={'nesterov': False})\n"
        "        elif o.name == 'adam':\n"
        "            o = o.model_copy(update={'beta_1': 0.5})\n"
        "        super().train(replace(job, optimizer=o), observer)\n"
        "@hookimpl\n"
        "def register_backends(register):\n"
        "    register(Sloppy())\n"
    )
    code = (
        "import sys; from convexp.backends.registry import pm; import sloppy_plugin; pm.register(sloppy_plugin, name='sloppy');"
        "from convexp.cli import main; sys.argv = ['convexp', 'check', 'sloppy', '--format', 'json']; main()"
    )
    result = subprocess.run([sys.executable, "-O", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    results = {r["check"]: r["result"] for r in json.loads(result.stdout)}
    assert results["nesterov"] == "FAIL" and results["adam"] == "FAIL"
    assert results["momentum"] == "pass" and results["one-step"] == "pass" and results["dropout"] == "pass"
    assert results["resume"] == "pass"  # its (wrong) Adam is the same before and after the checkpoint


def test_a_check_that_cannot_run_is_skipped_with_its_reason(tmp_path):
    from convexp.backends import registry as plugins
    from convexp.backends.conformance.checks import check_backend
    from convexp.backends.hookspecs import hookimpl
    from tests.backends.test_plugins import FakeBackend

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(FakeBackend())

    plugin = Plugin()
    plugins.pm.register(plugin, name="fake-for-skip")
    try:
        results = {r.name: r for r in check_backend("fake")}
    finally:
        plugins.pm.unregister(plugin)
    assert results["resume"].result == "skipped" and "no checkpoints handed out" in results["resume"].detail
    assert results["resume"].passed and not results["one-step"].passed
