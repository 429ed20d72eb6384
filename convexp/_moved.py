"""The module paths convexp had before its packages were arranged by concept, kept working for code written
against them (a third party's backend, a user's script): ``import convexp.training`` still works.

Each old path is an alias, made when it is first imported, of the module that now holds what it held
(the same module object, so classes compare equal), or, for a module whose contents were split, a module
that forwards each name to the new home that holds it. New code imports :mod:`convexp.plugin_api` (a backend) or
the new paths (everything else); nothing in convexp imports an old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

#: Each old path and the module(s) now holding its contents; where several, each name is looked up in order.
MOVED: dict[str, tuple[str, ...]] = {
    "convexp.activations": ("convexp.model.activations",),
    "convexp.allocator": ("convexp.experiments.allocator",),
    "convexp.augmentation": ("convexp.model.augmentation",),
    "convexp.backend": ("convexp.backends.protocol",),
    "convexp.cells": ("convexp.analysis.cells",),
    "convexp.conformance": ("convexp.backends.conformance.checks", "convexp.backends.conformance.kit"),
    "convexp.conformance_kit": ("convexp.backends.conformance.kit",),
    "convexp.conformance_layers": ("convexp.backends.conformance.layers",),
    "convexp.convolution": ("convexp.model.convolution", "convexp.cli.conv_text"),
    "convexp.executors": ("convexp.experiments.executors",),
    "convexp.features": ("convexp.backends.features",),
    "convexp.free_memory": ("convexp.machine",),
    "convexp.hookspecs": ("convexp.backends.hookspecs",),
    "convexp.initializers": ("convexp.model.initializers", "convexp.cli.backends"),
    "convexp.layers": (
        "convexp.model.layers",
        "convexp.model.parameters",
        "convexp.analysis.plan_text",
        "convexp.analysis.recorded_plan",
    ),
    "convexp.memory": ("convexp.experiments.estimate_memory",),
    "convexp.model_kernels": ("convexp.tracking.model_kernels",),
    "convexp.names": ("convexp.model.names",),
    "convexp.outputs": ("convexp.analysis.output_files",),
    "convexp.plugin_output": ("convexp.backends.output_checks",),
    "convexp.plugins": ("convexp.backends.registry",),
    "convexp.recorder": ("convexp.experiments.recorder",),
    "convexp.runner": ("convexp.experiments.runner", "convexp.experiments.grids"),
    "convexp.seeding": ("convexp.model.seeding",),
    "convexp.spec": ("convexp.experiments.spec", "convexp.experiments.grids", "convexp.experiments.experiments_file"),
    "convexp.storage": ("convexp.experiments.estimate_disk",),
    "convexp.training": ("convexp.backends.trainer", "convexp.model.optimizers", "convexp.model.weights"),
    "convexp.types": ("convexp.model.weights",),
}


#: Names renamed as they moved (one meaning per word: a *plan* is a network's layer plan), by old path.
RENAMED: dict[str, dict[str, str]] = {
    "convexp.runner": {
        "plan_runs": "prepare_runs",
        "plan": "prepare",
        "PlannedRun": "PreparedRun",
        "PlannedRuns": "PreparedRuns",
        "planned_from_record": "prepared_from_record",
    },
}


class _Forwarding(types.ModuleType):
    """An old module whose contents now live in several modules: each name is read from the first that has it."""

    def __init__(self, name: str, homes: Sequence[str]) -> None:
        super().__init__(name, f"Moved: the names of {name} now live in {', '.join(homes)}.")
        self._homes = tuple(homes)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        attribute = RENAMED.get(self.__name__, {}).get(attribute, attribute)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attribute!r}")

    def __dir__(self) -> list[str]:
        return sorted({name for home in self._homes for name in dir(importlib.import_module(home))})


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, homes: tuple[str, ...]) -> None:
        self.homes = homes
        self.own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if len(self.homes) == 1:
            module = importlib.import_module(self.homes[0])
            self.own_spec = module.__spec__
            return module
        return _Forwarding(spec.name, self.homes)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module is the new one, already imported (or a forwarder that imports on use). The
        import system has just set the alias's spec on it; the new module keeps its own."""
        if not isinstance(module, _Forwarding):
            module.__spec__ = self.own_spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        homes = MOVED.get(fullname)
        if homes is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(homes))


def install() -> None:
    """Make the old paths importable (once; ``import convexp`` calls it)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
