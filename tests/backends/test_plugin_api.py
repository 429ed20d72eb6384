"""convexp.plugin_api is the one module a backend imports: its surface is listed here, so that changing it is a
decision; our three backends and the example plugin import convexp through it alone; and importing it for a
backend loads no runner, store or conformance code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

#: The promised names. Adding one is cheap; removing or renaming one breaks a third party's backend.
SURFACE = [
    "ALL_FEATURES", "ActivationLayer", "Adam", "AdamW", "Augmentation", "AvgPool", "BASE_FEATURES", "Backend",
    "BackendUnavailableError", "BatchNorm", "CHECKS", "Check", "CheckResult", "CheckSkipped", "Checkpoint",
    "CollectingObserver", "ConformanceFailure", "Conv", "ConvexpError", "Dense", "Dropout", "EPOCH_METRICS", "Fans",
    "Flatten", "GlobalAvgPool", "INITIALIZER_NAMES", "Initializer", "KernelReader", "KernelSnapshot", "LEAKY_SLOPE",
    "MaxPool", "Optimizer", "Padding", "PlannedLayer", "ReLU", "Residual", "SGD", "STEP_METRICS", "Schedule",
    "StateReader", "TrainingJob", "TrainingObserver", "UnknownNameError", "activations", "augmentation_rng",
    "backend_rng", "batch_order", "check_backend", "clip_factor", "conv_output_size", "draw", "dropout_seed",
    "fans_of", "flat", "framework_seed", "get_initializer", "hookimpl", "initial_weights", "learning_rate_at",
    "non_finite", "run_check", "run_epochs", "same_padding", "tiny_job", "with_shared_init",
]  # fmt: skip


def test_the_surface_is_what_is_promised_and_every_name_resolves():
    import convexp.plugin_api as api

    assert sorted(api.__all__) == SURFACE
    assert len(set(api.__all__)) == len(api.__all__)
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Store'"):
        api.Store  # noqa: B018


def test_the_facade_hands_out_the_objects_convexp_itself_uses():
    """Not copies: a backend's KernelSnapshot is the one the runner checks, its SGD the one the spec validates."""
    import convexp.plugin_api as api
    from convexp.backends.conformance.checks import CHECKS, run_check
    from convexp.backends.conformance.kit import CheckSkipped
    from convexp.backends.protocol import Backend
    from convexp.model.optimizers import SGD
    from convexp.model.weights import KernelSnapshot

    assert (api.Backend, api.SGD, api.KernelSnapshot, api.CHECKS, api.run_check, api.CheckSkipped) == (
        Backend,
        SGD,
        KernelSnapshot,
        CHECKS,
        run_check,
        CheckSkipped,
    )


def test_importing_the_facade_loads_no_runner_store_or_conformance():
    code = (
        "import sys, json, convexp.plugin_api\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('convexp.experiments', 'convexp.store', "
        "'convexp.backends.conformance', 'convexp.backends.registry', 'sqlalchemy', 'torch', 'tensorflow')))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert loaded == []


def _convexp_imports(package: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        if "build" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            for module in modules:
                if module == "convexp" or module.startswith("convexp."):
                    found.setdefault(str(path.relative_to(REPO)), set()).add(module)
    return found


@pytest.mark.parametrize(
    "package",
    ["plugins/numpy_backend", "plugins/torch_backend", "plugins/tensorflow_backend", "examples/convexp-example-backend"],
)
def test_backends_import_convexp_only_through_the_plugin_api(package):
    imports = _convexp_imports(REPO / package)
    assert imports, f"{package} imports nothing of convexp?"
    assert {path: modules for path, modules in imports.items() if modules != {"convexp.plugin_api"}} == {}
