"""Grids: an experiment whose fields hold lists expands to one run per combination, in file order; resolving a
file's experiments into the runs to make, each validated before anything runs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from convexp.datasets.arrays import dataset_name
from convexp.errors import ConvexpError, SpecError, did_you_mean
from convexp.experiments.experiments_file import read_file
from convexp.experiments.spec import NOT_GRIDDED, ResolvedRun, RunSpec, check_backend, describe_error
from convexp.model.names import tag_problem

if TYPE_CHECKING:
    from convexp.backends.protocol import Backend


class Grid:
    """One experiment's runs, counted and expanded without ever being listed: each list-valued field
    (but ``layers`` and ``description``) is an axis, the runs are every combination in file order
    (the last axis fastest), and their number is the product of the axes' lengths. Iterating gives
    each run validated as it comes, so a grid of a billion runs costs constant memory."""

    def __init__(
        self,
        path: str | Path,
        experiment: str,
        raw: dict[str, Any],
        overrides: Mapping[str, Any] | None = None,
        backends: Mapping[str, Backend] | None = None,
    ):
        raw = dict(raw)
        self.tags, self.notes = _labels(path, experiment, raw.pop("tags", None), raw.pop("notes", None))
        raw["dataset"] = _dataset(path, experiment, raw.get("dataset"))
        if isinstance(raw.get("layers"), dict) and "architecture" not in raw:  # named layer lists: a run of each
            raw["architecture"] = list(raw["layers"])
        self.path, self.experiment, self.raw = path, experiment, raw
        self.overrides, self.backends = dict(overrides or {}), backends
        self.axes = tuple(key for key, value in raw.items() if key not in NOT_GRIDDED and isinstance(value, list))
        self._validated_axes: dict[str, list[RunSpec]] = {}
        for key in self.axes:
            if not raw[key]:
                raise SpecError(f"{path}: experiment '{experiment}': field '{key}': an empty list gives no runs")

    def __len__(self) -> int:
        return math.prod(len(self.raw[key]) for key in self.axes)

    def sizes(self) -> dict[str, int]:
        """Each axis and how many values it has."""
        return {key: len(self.raw[key]) for key in self.axes}

    def combination(self, **choices: Any) -> dict[str, Any]:
        """The raw fields of the run taking each axis's first value, but the values ``choices`` gives."""
        return {**self.raw, **{key: self.raw[key][0] for key in self.axes}, **choices}

    def spec(self, **choices: Any) -> RunSpec:
        """The validated spec of :meth:`combination` (raises :class:`SpecError` naming the field)."""
        return self._validated(self.combination(**choices))

    def validated(self, axis: str) -> list[RunSpec]:
        """The spec of each value of ``axis`` in turn (the other axes at their first value), made once."""
        if axis not in self._validated_axes:
            self._validated_axes[axis] = [self.spec(**{axis: value}) for value in self.raw[axis]]
        return self._validated_axes[axis]

    def check(self) -> None:
        """Validate every value of every axis (each in the first run, with the other axes at their first
        value) -- the sum of the axes' lengths, not their product; raises :class:`SpecError`."""
        self.spec()
        for key in self.axes:
            seen: set[str] = set()
            for value in self.raw[key]:
                marker = repr(value)
                if marker not in seen:
                    seen.add(marker)
                    self.spec(**{key: value})

    def __iter__(self) -> Iterator[ResolvedRun]:
        for values in itertools.product(*(self.raw[key] for key in self.axes)):
            spec = self._validated({**self.raw, **dict(zip(self.axes, values))})
            yield ResolvedRun(self.experiment, spec, self.tags, self.notes)

    def _validated(self, combo: dict[str, Any]) -> RunSpec:
        try:
            spec = RunSpec.model_validate(combo)
            if self.backends is not None:
                check_backend(spec, self.backends)
            return spec
        except ValidationError as exc:
            field = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else ""
            given = f" (given on the command line as --{field})" if field in self.overrides else ""
            raise SpecError(f"{self.path}: experiment '{self.experiment}': {describe_error(exc)}{given}") from None
        except ValueError as exc:
            text = str(exc)
            field = text.split("'")[1] if text.startswith("field '") else ""
            given = f" (given on the command line as --{field})" if field in self.overrides else ""
            raise SpecError(
                f"{self.path}: experiment '{self.experiment}': {text if text.startswith('field ') else 'field ' + text}{given}"
            ) from None


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
    overrides: dict[str, Any] | None = None,
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
        grid = Grid(path, name, {**experiments[name], **(overrides or {})}, overrides, backends)
        grid.check()
        grids.append(grid)
    return grids


def resolve_runs(
    path: str | Path,
    names: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
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


def validate_file(path: str | Path, backends: Mapping[str, Backend] | None = None) -> dict[str, Grid]:
    """Validate every experiment of a file (against ``backends`` too, if given); returns each one's grid
    of runs, counted, not expanded."""
    _, experiments = read_file(path)
    return {name: resolve_grids(path, [name], backends=backends)[0] for name in experiments}
