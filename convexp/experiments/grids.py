"""Grids: an experiment whose fields hold lists expands to one run per combination, in file order; resolving a
file's experiments into the runs to make, each validated before anything runs."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from convexp.datasets.arrays import dataset_name
from convexp.errors import ConvexpError, SpecError, did_you_mean
from convexp.experiments.axes import GRID_KEY, check_path, find_axes, product, set_path, with_default
from convexp.experiments.experiments_file import read_file
from convexp.experiments.overrides import Axis, Override, as_overrides
from convexp.experiments.spec import ResolvedRun, RunSpec, check_backend, describe_error
from convexp.experiments.sweep_spec import SWEEP_KEY, SweepSpec, check_objective, parse_sweep, sweep_digest
from convexp.model.names import tag_problem

if TYPE_CHECKING:
    from convexp.backends.protocol import Backend


class Grid:
    """One experiment's runs, counted and expanded without ever being listed: each axis (a list where a field
    takes one value, nested fields and the ``grid:`` block's dotted paths included: :mod:`convexp.experiments.axes`)
    multiplies the runs, which are every combination in file order (the last axis fastest). Iterating gives
    each run validated as it comes, so a grid of a billion runs costs constant memory. ``overrides`` (fields set
    from the command line: :mod:`convexp.experiments.overrides`) are applied first.

    An experiment with a ``sweep:`` block (:mod:`convexp.experiments.sweep_spec`) is a search instead: its
    :attr:`sweep` says how, its length is its number of trials, each axis is a swept field's extent (the values
    that bound it, for validation and the estimates), and its runs are sampled as it runs
    (:func:`convexp.experiments.runner.execute`), not iterated."""

    def __init__(
        self,
        path: str | Path,
        experiment: str,
        raw: dict[str, Any],
        overrides: Mapping[str, Any] | Sequence[Override] | None = None,
        backends: Mapping[str, Backend] | None = None,
    ):
        self.path, self.experiment, self.backends = path, experiment, backends
        self.overrides = as_overrides(overrides)
        raw = dict(raw)
        self.tags, self.notes = _labels(path, experiment, raw.pop("tags", None), raw.pop("notes", None))
        #: The search, for an experiment with a ``sweep:`` block.
        self.sweep: SweepSpec | None = None
        try:
            raw, block = self._overridden(raw, raw.pop(SWEEP_KEY, None))
            raw["dataset"] = _dataset(path, experiment, raw.get("dataset"))
            if isinstance(raw.get("layers"), dict) and "architecture" not in raw:  # named layer lists: a run of each
                raw["architecture"] = list(raw["layers"])
            self.axis_values = find_axes(raw)
            if block is not None:
                self.sweep, raw = self._searched(block, raw)
                self.axis_values = {p: d.extent() for p, d in self.sweep.parameters.items()}
        except ValueError as exc:
            raise SpecError(f"{path}: experiment '{experiment}': {self._given(str(exc))}") from None
        #: What identifies a sweep (its fields and block, less its number of trials), for resuming it.
        self.sweep_digest = sweep_digest(raw, self.sweep) if self.sweep else None
        base = {key: value for key, value in raw.items() if key != GRID_KEY}
        for axis, values in self.axis_values.items():
            base = set_path(base, axis, values[0])
        self.raw, self.axes = base, tuple(self.axis_values)
        self._validated_axes: dict[str, list[RunSpec]] = {}

    def _searched(self, block: Any, raw: dict[str, Any]) -> tuple[SweepSpec, dict[str, Any]]:
        """The sweep of a ``sweep:`` block, and the fields with each swept one written out (a default optimizer's)."""
        if self.axis_values:
            axis = next(iter(self.axis_values))
            raise ValueError(
                f"field '{axis}': a sweep samples the values of its parameters, so the experiment's other fields "
                f"take one value each; sweep this one too (sweep.parameters: {{{axis}: {{choice: [...]}}}})"
            )
        sweep = parse_sweep(block, raw)
        for swept in sweep.parameters:
            raw = with_default(raw, swept)
        return sweep, raw

    def _overridden(self, raw: dict[str, Any], block: Any) -> tuple[dict[str, Any], Any]:
        for override in self.overrides:
            if override.path.split(".")[0] == SWEEP_KEY:
                block = _set_in_sweep(block, override)
                continue
            check_path(raw, override.path)
            grid = dict(raw.get(GRID_KEY) or {})
            grid.pop(override.path, None)
            value = override.value
            if isinstance(value, Axis):
                grid[override.path] = list(value.values)
                value = value.values[0]
            raw = set_path(with_default(raw, override.path), override.path, value)
            if grid:
                raw[GRID_KEY] = grid
            else:
                raw.pop(GRID_KEY, None)
        return raw, block

    def __len__(self) -> int:
        if self.sweep is not None:
            return self.sweep.total_trials
        return math.prod(len(values) for values in self.axis_values.values())

    def sizes(self) -> dict[str, int]:
        """Each axis and how many values it has."""
        return {axis: len(values) for axis, values in self.axis_values.items()}

    def values(self, axis: str) -> Sequence[Any]:
        """The values of ``axis``, in order."""
        return self.axis_values[axis]

    def bounds(self, axis: str) -> Sequence[Any]:
        """The values of ``axis`` that bound what a run of it needs: a range's two ends, else every value (a sweep
        samples anywhere in between, and a run's size grows or shrinks with a number, never both)."""
        values = self.axis_values[axis]
        return [values[0], values[-1]] if isinstance(values, range) and len(values) > 1 else values

    def combination(self, **choices: Any) -> dict[str, Any]:
        """The raw fields of the run taking each axis's first value, but the values ``choices`` gives (by path)."""
        combo = self.raw
        for axis, value in choices.items():
            combo = set_path(combo, axis, value)
        return combo

    def spec(self, **choices: Any) -> RunSpec:
        """The validated spec of :meth:`combination` (raises :class:`SpecError` naming the field)."""
        return self._validated(self.combination(**choices))

    def validated(self, axis: str) -> list[RunSpec]:
        """The spec of each value of ``axis`` in turn (the other axes at their first value), made once."""
        if axis not in self._validated_axes:
            self._validated_axes[axis] = [self.spec(**{axis: value}) for value in self.values(axis)]
        return self._validated_axes[axis]

    def check(self) -> None:
        """Validate every value of every axis (each in the first run, with the other axes at their first
        value) -- the sum of the axes' lengths, not their product; raises :class:`SpecError`. A range's
        values are checked at its ends (they differ only in the number). A sweep's objective is checked against
        the network (a measure's layer is a recorded conv layer)."""
        first = self._check_value()
        if self.sweep is not None:
            try:
                self.sweep = check_objective(self.sweep, first)
            except ValueError as exc:
                raise SpecError(f"{self.path}: experiment '{self.experiment}': {exc}") from None
        for axis, values in self.axis_values.items():
            if isinstance(values, range):
                values = [values[0], values[-1]]
            seen: set[str] = set()
            for value in values:
                marker = repr(value)
                if marker not in seen:
                    seen.add(marker)
                    self._check_value(axis, value)

    def _check_value(self, axis: str | None = None, value: Any = None) -> RunSpec:
        """The spec with ``axis`` at ``value`` (all at their first value without); a sweep's error names the swept
        field it comes from."""
        try:
            return self.spec(**({axis: value} if axis else {}))
        except SpecError as exc:
            if self.sweep is None:
                raise
            message = str(exc).split(": ", 2)[-1]
            field = message.split("'")[1] if message.startswith("field '") else ""
            for path, swept in self.sweep.parameters.items():
                if field and _same_field(field.split("."), path.split(".")):
                    raise SpecError(f"{exc} (a value of sweep.parameters.{path}: {swept.describe()})") from None
            raise

    def __iter__(self) -> Iterator[ResolvedRun]:
        if self.sweep is not None:
            raise ConvexpError(
                f"experiment '{self.experiment}' is a {self.sweep.method} search: its trials are sampled as it runs "
                "(convexp.experiments.runner.execute)"
            )
        for values in product(list(self.axis_values.values())):
            spec = self._validated(self.combination(**dict(zip(self.axes, values))))
            yield ResolvedRun(self.experiment, spec, self.tags, self.notes)

    def resolved(self, **choices: Any) -> ResolvedRun:
        """The run taking ``choices`` (by path) and the first value of the other axes, with the experiment's labels."""
        return ResolvedRun(self.experiment, self.spec(**choices), self.tags, self.notes)

    def _given(self, message: str) -> str:
        """``message`` naming what the command line gave, when the field it is about came from there."""
        field = message.split("'")[1] if message.startswith("field '") else ""
        for override in self.overrides:
            if field and _same_field(field.split("."), override.path.split(".")):
                return f"{message} (given on the command line as {override.given})"
        return message

    def _validated(self, combo: dict[str, Any]) -> RunSpec:
        try:
            spec = RunSpec.model_validate(combo)
            if self.backends is not None:
                check_backend(spec, self.backends)
            return spec
        except ValidationError as exc:
            raise SpecError(f"{self.path}: experiment '{self.experiment}': {self._given(describe_error(exc))}") from None
        except ValueError as exc:
            text = str(exc)
            text = text if text.startswith("field ") else "field " + text
            raise SpecError(f"{self.path}: experiment '{self.experiment}': {self._given(text)}") from None


def _set_in_sweep(block: Any, override: Override) -> Any:
    """The ``sweep:`` block with an override of one of its fields (``--set sweep.trials=20``)."""
    if block is None:
        raise ValueError(f"field '{override.path}': the experiment has no sweep: block (given as {override.given})")
    if isinstance(override.value, Axis):
        raise ValueError(f"field '{override.path}': a sweep's settings take one value (given as {override.given})")
    rest = override.path.split(".")[1:]
    if not rest:
        return override.value
    if not isinstance(block, dict):
        return block  # the block's own error says what it should be
    if rest[0] == "parameters" and len(rest) > 1:  # its keys are dotted paths themselves
        parameters = block.get("parameters")
        return {
            **block,
            "parameters": {**(parameters if isinstance(parameters, dict) else {}), ".".join(rest[1:]): override.value},
        }
    return set_path(block, ".".join(rest), override.value)


def _same_field(named: list[str], given: list[str]) -> bool:
    """Whether a field an error names (``optimizer.adam.learning_rate``: pydantic names the optimizer's kind) is,
    holds or lies in the one a path names (``optimizer.learning_rate``)."""
    if named[0] != given[0]:
        return False
    shorter, longer = sorted((named, given), key=len)
    parts = iter(longer)
    return all(part in parts for part in shorter)


def _dataset(path: str | Path, experiment: str, dataset: Any) -> Any:
    """An experiment's ``dataset`` with ``{path: FILE.npz}`` (your own arrays, relative to the experiments file)
    made the name a run records, ``npz:`` and the absolute path; a list of them likewise (a grid axis)."""
    if isinstance(dataset, list):
        return [_dataset(path, experiment, d) for d in dataset]
    if not isinstance(dataset, dict):
        return dataset

    if set(dataset) != {"path"} or not isinstance(dataset["path"], str):
        raise SpecError(
            f"{path}: experiment '{experiment}': field 'dataset': a dataset name, or {{path: FILE.npz}} (got {dataset!r})"
        )
    try:
        return dataset_name(dataset["path"], Path(path).parent)
    except ConvexpError as exc:
        raise SpecError(f"{path}: experiment '{experiment}': field 'dataset': {exc}") from None


def _labels(path: str | Path, experiment: str, tags: Any, notes: Any) -> tuple[tuple[str, ...], str | None]:
    """An experiment's ``tags`` (a list of tags, or one) and ``notes`` (text), checked; they label its runs
    and are not part of what a run is asked to do (its spec)."""
    where = f"{path}: experiment '{experiment}'"
    if tags is None:
        tags = []
    elif isinstance(tags, str):
        tags = [tags]
    elif not isinstance(tags, list):
        raise SpecError(f"{where}: field 'tags': a list of tags, e.g. [baseline, lr-sweep] (got {tags!r})")
    for tag in tags:
        if problem := tag_problem(tag):
            raise SpecError(f"{where}: field 'tags': {problem}")
    if notes is not None and not isinstance(notes, str):
        raise SpecError(f"{where}: field 'notes': text (got {notes!r})")
    return tuple(dict.fromkeys(tags)), notes or None


def resolve_grids(
    path: str | Path,
    names: list[str] | None = None,
    overrides: Mapping[str, Any] | Sequence[Override] | None = None,
    backends: Mapping[str, Backend] | None = None,
) -> list[Grid]:
    """The named experiments of a file (default: its default one) as grids, each value of each of
    their fields validated (see :meth:`Grid.check`) without expanding them."""
    default, experiments = read_file(path)
    chosen = names or [default or next(iter(experiments))]
    grids = []
    for name in chosen:
        if name not in experiments:
            known = ", ".join(experiments)
            raise SpecError(f"{path}: no experiment '{name}'{did_you_mean(name, experiments)}; defined: {known}")
        grid = Grid(path, name, experiments[name], overrides, backends)
        grid.check()
        grids.append(grid)
    return grids


def resolve_runs(
    path: str | Path,
    names: list[str] | None = None,
    overrides: Mapping[str, Any] | Sequence[Override] | None = None,
    backends: Mapping[str, Backend] | None = None,
) -> list[ResolvedRun]:
    """Validate the named experiments of a file (default: its default one) and expand them into runs.

    ``overrides`` replace fields before expansion (e.g. ``{"epochs": 1}`` from the command
    line). With ``backends`` (name -> backend, as :func:`convexp.backends.registry.get_backends` gives), each
    run is also checked against them (:func:`check_backend`); without, only the spec's own shape
    is, so reading experiments needs no installed backend. Raises :class:`SpecError` naming the
    file, experiment and field on any problem. Lists every run: for a grid of any size use
    :func:`resolve_grids`.
    """
    return [run for grid in resolve_grids(path, names, overrides, backends) for run in grid]


def validate_file(
    path: str | Path,
    backends: Mapping[str, Backend] | None = None,
    overrides: Mapping[str, Any] | Sequence[Override] | None = None,
) -> dict[str, Grid]:
    """Validate every experiment of a file (against ``backends`` too, if given; with ``overrides`` set in each);
    returns each one's grid of runs, counted, not expanded."""
    _, experiments = read_file(path)
    return {name: resolve_grids(path, [name], overrides, backends)[0] for name in experiments}
