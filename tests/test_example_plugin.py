"""The example plugin under examples/ installs as a third party's would, passes `convexp check`, and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY_DIGITS, run_cli, write_experiments


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """The example package installed (non-editable, no dependencies) into a folder of its own."""
    site = tmp_path_factory.mktemp("example-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(REPO / "examples" / "convexp-example-backend")],
        check=True, capture_output=True, timeout=600,
    )
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_example_plugin_is_discovered_through_its_entry_point(example_site):
    backends = {b["name"]: b for b in json.loads(run_cli("plugins", "--format", "json", env=example_site).stdout)}
    assert backends["example"]["usable"] and backends["example"]["plugin"] == "example"
    assert backends["example"]["plugin_version"] == "0.1.0"


def test_example_plugin_passes_convexp_check(example_site):
    result = run_cli("check", "example", "--format", "json", env=example_site)
    assert result.returncode == 0, result.stdout + result.stderr
    results = {r["check"]: r for r in json.loads(result.stdout)}
    assert {name: r["result"] for name, r in results.items()} == {
        "conv": "pass", "initializers": "pass", "one-step": "pass", "snapshots": "pass", "trainer": "pass", "reproducible": "pass",
        "resume": "pass",
    }
    # the example trains with convexp's numpy trainer, so its runs resume exactly
    assert results["resume"]["detail"].endswith("max abs difference 0.0e+00"), results["resume"]


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
        "from convexp.hookspecs import hookimpl\n"
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
        "import sys; from convexp.plugins import pm; import flipped_plugin; pm.register(flipped_plugin, name='flipped');"
        "from convexp.cli import main; sys.argv = ['convexp', 'check', 'flipped', '--format', 'json']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    results = {r["check"]: r for r in json.loads(result.stdout)}
    assert results["conv"]["result"] == "FAIL" and "Mismatched elements" in results["conv"]["detail"]
    assert results["trainer"]["result"] == "pass"
