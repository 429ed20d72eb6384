"""How much a selection of runs will write, before it starts, and whether the database has room.

Recording every kernel at every step is convexp's point, and its price: one MNIST epoch of
mnist-keras-convnet with every-step snapshots is about 35 MB. The estimate comes from the
specs alone (layer shapes, snapshot schedule, steps), so a 10,000-run grid is sized in well
under a second, without loading data or a backend. Rows are counted exactly; bytes are those of
raw float32 kernels, an upper bound: snapshots stored as XOR deltas (the default, see
:mod:`convexp.store.encoding`) take about 30% less on every-step runs, by how much depends on
how the weights move, which the specs cannot tell.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from convexp.datasets import dataset_info
from convexp.errors import ConvexpError
from convexp.experiments.axes import product, top_field
from convexp.experiments.grids import Grid
from convexp.experiments.spec import RunSpec
from convexp.model.layers import flat
from convexp.store.database import resolve_url, sqlite_path
from convexp.store.space import format_bytes

#: Bytes a snapshot row takes beside its kernel and bias bytes (row header, ids, layer name,
#: the (run, layer, step) index entry), and a metric row in all; measured on SQLite files of
#: every-step runs (benchmarks/store.py), rounded up.
SNAPSHOT_ROW_OVERHEAD = 120
METRIC_ROW_BYTES = 70
#: Above either, `convexp run` asks before it starts (or takes --yes). Environment variables
#: of the same names change them (bytes as a plain number).
CONFIRM_RUNS = 100
CONFIRM_BYTES = 5 * 10**9


def confirm_threshold(variable: str, default: int) -> int:
    """A threshold from the environment variable ``variable`` (a whole number >= 0), else ``default``;
    a bad value is one line naming the variable and the value."""

    value = os.environ.get(variable)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        number = -1
    if number < 0:
        raise ConvexpError(
            f"{variable}={value!r} is not a whole number >= 0 (it is a count of {variable.split('_')[-1].lower()})"
        )
    return number


@dataclass(frozen=True)
class StorageEstimate:
    """What a selection of runs will write: rows and bytes of kernel snapshots and metrics."""

    runs: int
    steps: int
    snapshot_rows: int
    snapshot_bytes: int
    metric_rows: int

    @property
    def metric_bytes(self) -> int:
        """Estimated bytes of the metric rows."""
        return self.metric_rows * METRIC_ROW_BYTES

    @property
    def total_bytes(self) -> int:
        """Estimated bytes the database grows by (checkpoints, one per run, are not counted)."""
        return self.snapshot_bytes + self.metric_bytes

    def __add__(self, other: StorageEstimate) -> StorageEstimate:
        return StorageEstimate(
            self.runs + other.runs,
            self.steps + other.steps,
            self.snapshot_rows + other.snapshot_rows,
            self.snapshot_bytes + other.snapshot_bytes,
            self.metric_rows + other.metric_rows,
        )

    def describe(self) -> str:
        """One line: runs, steps, snapshot rows and the estimated size."""
        return (
            f"{self.runs:,} run(s), {self.steps:,} steps, {self.snapshot_rows:,} kernel snapshot(s), "
            f"{self.metric_rows:,} metric row(s): up to {format_bytes(self.total_bytes)}"
        )


NOTHING = StorageEstimate(0, 0, 0, 0, 0)


def snapshot_steps(total_steps: int, steps_per_epoch: int, every: int | None, epoch_end: bool) -> int:
    """How many steps a run records kernels at: step 0, every ``every``-th step, and each epoch's
    last step (the run's last step ends its last epoch, also when max_steps cuts it short)."""
    return int(_counts(0, 0, 0, 0, 1, every or 0, epoch_end, total=total_steps, per_epoch=steps_per_epoch)[1])


def _counts(train, batch_size, epochs, max_steps, log_every, every, epoch_end: bool, *, total=None, per_epoch=None):
    """(steps, snapshot steps, metric rows) of runs, for numbers or numpy integer arrays alike (a grid
    is sized array-wise): ``max_steps`` and ``every`` are 0 for none. With ``total`` and ``per_epoch``
    given, those are used instead of being worked out from the others."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    if per_epoch is None:
        per_epoch = -(-np.asarray(train, dtype=np.int64) // batch_size)
    if total is None:
        total = per_epoch * epochs
        total = np.where(np.asarray(max_steps) > 0, np.minimum(total, max_steps), total)
    total, per_epoch, every = (np.asarray(x, dtype=np.int64) for x in (total, per_epoch, every))
    some = np.maximum(every, 1)
    regular = np.where(every > 0, total // some, 0)
    ends = 0
    if epoch_end:  # the epochs' last steps up to ``total``, and ``total`` itself, unless ``every`` takes them
        ends = total // per_epoch - np.where(every > 0, total // np.lcm(per_epoch, some), 0)
        ends = ends + ((total % per_epoch != 0) & ((every == 0) | (total % some != 0)))
    epochs_run = -(-total // per_epoch)
    metric_rows = 2 * (total // np.asarray(log_every, dtype=np.int64)) + 3 * epochs_run  # train loss, accuracy; 3 a test
    return total, 1 + regular + ends, metric_rows


def _row_sizes(spec: RunSpec) -> tuple[int, int]:
    """(layers recorded, bytes a step's snapshot rows take) for ``spec``."""
    recorded = set(spec.snapshot_layers())
    sizes = [4 * p.snapshot_values for p in flat(spec.plan()) if p.name in recorded and p.snapshot_shape]
    return len(sizes), sum(size + SNAPSHOT_ROW_OVERHEAD for size in sizes)


def _train_examples(spec: RunSpec) -> int:
    train = dataset_info(spec.dataset).train_examples
    return min(train, spec.train_examples) if spec.train_examples else train


def estimate_run(spec: RunSpec) -> StorageEstimate:
    """What one run of ``spec`` writes if it finishes."""
    layers, per_step = _row_sizes(spec)
    total, steps, metric_rows = _counts(
        _train_examples(spec), spec.batch_size, spec.epochs, spec.max_steps or 0, spec.log_every,
        spec.snapshots.every or 0, spec.snapshots.epoch_end,
    )  # fmt: skip
    return StorageEstimate(1, int(total), int(steps) * layers, int(steps) * per_step, int(metric_rows))


def estimate(specs: Iterable[RunSpec]) -> StorageEstimate:
    """What a selection of runs writes in all; specs that size alike are sized once."""
    sized: dict[str, StorageEstimate] = {}
    total = NOTHING
    for spec in specs:
        key = spec.model_dump_json(include=set(SIZING_FIELDS))
        if key not in sized:
            sized[key] = estimate_run(spec)
        total = total + sized[key]
    return total


#: The fields that decide what a run writes; the others (seed, initializer, optimizer...) do not.
SIZING_FIELDS = ("dataset", "layers", "epochs", "batch_size", "max_steps", "train_examples", "log_every", "snapshots")
#: Of those, the whole numbers a grid's runs are sized by array-wise.
_NUMBERS = ("epochs", "batch_size", "max_steps", "train_examples", "log_every")
#: Combinations sized at a time: memory stays bounded whatever the grid.
_CHUNK = 1 << 20


def estimate_grid(grid: Grid) -> StorageEstimate:
    """What every run of a grid writes in all, from the sizes of its axes: never expanded, so a grid of a
    billion runs is sized in under a second. Axes that do not change what a run writes (seed,
    initializer...) multiply; whole-number axes (epochs, batch_size...) are summed array-wise, a
    chunk of combinations at a time; the dataset and the snapshot schedule, one value after another.
    A sweep's (:func:`estimate_sweep`): its trials times the most one of them can write."""
    if grid.sweep is not None:
        return estimate_sweep(grid)

    import numpy as np  # numpy on first use: the store and the spec load without it

    sizes = grid.sizes()
    numbers = [axis for axis in grid.axes if axis in _NUMBERS]
    others = [axis for axis in grid.axes if top_field(axis) in SIZING_FIELDS and axis not in _NUMBERS]
    repeats = math.prod(n for axis, n in sizes.items() if top_field(axis) not in SIZING_FIELDS)
    values = {axis: np.array([getattr(v, axis) or 0 for v in grid.validated(axis)], dtype=np.int64) for axis in numbers}
    shape = tuple(len(values[axis]) for axis in numbers)
    runs = steps = snapshot_rows = snapshot_bytes = metric_rows = 0
    for choice in product([grid.values(axis) for axis in others]):
        spec = grid.spec(**dict(zip(others, choice)))
        layers, per_step = _row_sizes(spec)
        dataset_train = dataset_info(spec.dataset).train_examples
        count = math.prod(shape)
        for start in range(0, count, _CHUNK):
            index = np.unravel_index(np.arange(start, min(count, start + _CHUNK)), shape) if shape else ()
            field = {axis: values[axis][i] for axis, i in zip(numbers, index)}

            def value(name, default, field=field):
                return field.get(name, default)

            limit = value("train_examples", spec.train_examples or 0)
            train = np.where(np.asarray(limit) > 0, np.minimum(dataset_train, limit), dataset_train)
            total, snaps, metrics = _counts(
                train, value("batch_size", spec.batch_size), value("epochs", spec.epochs), value("max_steps", spec.max_steps or 0),
                value("log_every", spec.log_every), spec.snapshots.every or 0, spec.snapshots.epoch_end,
            )  # fmt: skip
            chunk = len(index[0]) if shape else 1
            runs += chunk
            steps += int(np.sum(np.broadcast_to(total, (chunk,)), dtype=np.int64))
            recorded = int(np.sum(np.broadcast_to(snaps, (chunk,)), dtype=np.int64))
            snapshot_rows += recorded * layers
            snapshot_bytes += recorded * per_step
            metric_rows += int(np.sum(np.broadcast_to(metrics, (chunk,)), dtype=np.int64))
    return StorageEstimate(
        runs * repeats, steps * repeats, snapshot_rows * repeats, snapshot_bytes * repeats, metric_rows * repeats
    )


def estimate_sweep(grid: Grid) -> StorageEstimate:
    """The most a sweep's trials write: each trial as much as the largest run its parameters allow, found among
    the ends of each swept field that sizes a run (both ends of a range, every choice), so a sweep of any
    number of trials is sized at once."""
    sizing = [axis for axis in grid.axes if top_field(axis) in SIZING_FIELDS]
    ends = [grid.bounds(axis) for axis in sizing]
    largest = max(
        (estimate_run(grid.spec(**dict(zip(sizing, choice)))) for choice in product(ends)),
        key=lambda e: (e.total_bytes, e.steps),
    )
    trials = len(grid)
    return StorageEstimate(
        trials,
        largest.steps * trials,
        largest.snapshot_rows * trials,
        largest.snapshot_bytes * trials,
        largest.metric_rows * trials,
    )


def free_bytes(db: str | os.PathLike[str] | None) -> int | None:
    """Free space on the disk holding a SQLite database (or where it will be created); None for
    a server database, whose disk convexp cannot see."""
    path = sqlite_path(resolve_url(db))
    if path is None:
        return None
    folder = Path(path).resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def needs_confirmation(expected: StorageEstimate) -> bool:
    """Whether a selection is big enough that a person should say yes before it starts."""
    runs = confirm_threshold("CONVEXP_CONFIRM_RUNS", CONFIRM_RUNS)
    return expected.runs > runs or expected.total_bytes > confirm_threshold("CONVEXP_CONFIRM_BYTES", CONFIRM_BYTES)
