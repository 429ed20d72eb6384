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
from convexp.spec import RunSpec
from convexp.store.database import resolve_url, sqlite_path
from convexp.store.space import format_bytes

#: Bytes a snapshot row takes beside its kernel and bias bytes (row header, ids, layer name,
#: the (run, layer, step) index entry), and a metric row in all; measured on SQLite files of
#: every-step runs (benchmarks/store.py), rounded up.
SNAPSHOT_ROW_OVERHEAD = 120
METRIC_ROW_BYTES = 70
#: Above either, `convexp run` asks before it starts (or takes --yes). Environment variables
#: of the same names change them (bytes as a plain number).
CONFIRM_RUNS = int(os.environ.get("CONVEXP_CONFIRM_RUNS", "100"))
CONFIRM_BYTES = int(os.environ.get("CONVEXP_CONFIRM_BYTES", str(5 * 10**9)))


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
    regular = total_steps // every if every else 0
    ends = set(range(steps_per_epoch, total_steps + 1, steps_per_epoch)) | {total_steps} if epoch_end else set()
    return 1 + regular + sum(1 for step in ends - {0} if not every or step % every)


def estimate_run(spec: RunSpec) -> StorageEstimate:
    """What one run of ``spec`` writes if it finishes."""
    train = dataset_info(spec.dataset).train_examples
    if spec.train_examples:
        train = min(train, spec.train_examples)
    per_epoch = math.ceil(train / spec.batch_size)
    total = per_epoch * spec.epochs
    if spec.max_steps:
        total = min(total, spec.max_steps)
    epochs = math.ceil(total / per_epoch)
    recorded = set(spec.snapshot_layers())
    shapes = [p.kernel_shape for p in spec.plan() if p.name in recorded]
    per_step = sum(math.prod(shape) * 4 + shape[0] * 4 + SNAPSHOT_ROW_OVERHEAD for shape in shapes if shape)
    steps = snapshot_steps(total, per_epoch, spec.snapshots.every, spec.snapshots.epoch_end)
    metric_rows = 2 * (total // spec.log_every) + 3 * epochs  # train loss and accuracy; test loss, accuracy, seconds
    return StorageEstimate(1, total, steps * len(shapes), steps * per_step, metric_rows)


def estimate(specs: Iterable[RunSpec]) -> StorageEstimate:
    """What a selection of runs writes in all; specs that size alike are sized once."""
    sized: dict[str, StorageEstimate] = {}
    total = NOTHING
    for spec in specs:
        key = spec.model_dump_json(
            include={"dataset", "layers", "epochs", "batch_size", "max_steps", "train_examples", "log_every", "snapshots"}
        )
        if key not in sized:
            sized[key] = estimate_run(spec)
        total = total + sized[key]
    return total


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
    return expected.runs > CONFIRM_RUNS or expected.total_bytes > CONFIRM_BYTES
