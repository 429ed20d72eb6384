"""Reading a run's kernel snapshots back: which layers and steps there are, one step, a window of
steps, one filter over time, a whole layer as arrays. Snapshots stored as XOR deltas are decoded
here (through :mod:`convexp.store.chains`), so every reader gets float32 kernels, bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, select

from convexp.errors import StoreError
from convexp.store import chains
from convexp.store.encoding import RAW
from convexp.store.models import KernelSnapshotRow
from convexp.store.records import KernelSeries, LayerSnapshots, StoredSnapshot

if TYPE_CHECKING:
    import numpy as np


class SnapshotReads:
    """The :class:`~convexp.store.Store` methods that read kernel snapshots (a part of Store, kept in a module of its own)."""

    engine: Engine

    def snapshot_layers(self, run_id: int) -> list[str]:
        """Names of the layers whose snapshots in a run are filters: conv kernels (out, in, kh, kw). A batch_norm
        layer's (4, C) statistics, recorded beside them for the analysis, are not listed (:meth:`snapshot_summary` is)."""
        query = (
            select(KernelSnapshotRow.layer, func.min(KernelSnapshotRow.shape))
            .where(KernelSnapshotRow.run_id == run_id)
            .group_by(KernelSnapshotRow.layer)
            .order_by(KernelSnapshotRow.layer)
        )
        with self.engine.connect() as connection:
            return [layer for layer, shape in connection.execute(query) if len(json.loads(shape)) == 4]

    def snapshot_count(self, run_ids: Iterable[int]) -> int:
        """How many snapshots these runs hold together, in one query: a view computed from them is still
        current while this and the runs' own fields stay the same (thinning a finished run changes only this)."""
        query = select(func.count()).select_from(KernelSnapshotRow).where(KernelSnapshotRow.run_id.in_(list(run_ids)))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def snapshot_summary(self, run_id: int) -> list[LayerSnapshots]:
        """Per layer with snapshots: how many, the first and last step, and the kernel shape (no kernel bytes read)."""
        query = (
            select(
                KernelSnapshotRow.layer,
                func.count(),
                func.min(KernelSnapshotRow.step),
                func.max(KernelSnapshotRow.step),
                func.min(KernelSnapshotRow.shape),
            )
            .where(KernelSnapshotRow.run_id == run_id)
            .group_by(KernelSnapshotRow.layer)
            .order_by(KernelSnapshotRow.layer)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [LayerSnapshots(layer, count, first, last, tuple(json.loads(shape))) for layer, count, first, last, shape in rows]

    def snapshot_steps(self, run_id: int, layer: str, after_step: int = -1) -> list[int]:
        """The steps after ``after_step`` at which a layer of a run has snapshots, in order (no kernel bytes read)."""
        query = (
            select(KernelSnapshotRow.step)
            .where(KernelSnapshotRow.run_id == run_id, KernelSnapshotRow.layer == layer, KernelSnapshotRow.step > after_step)
            .order_by(KernelSnapshotRow.step)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def self_contained_steps(self, run_id: int, layer: str) -> list[int]:
        """The steps whose snapshots of a layer decode from their own row alone (stored raw, not as a delta):
        the cheapest to read when any of several nearby steps will do, as for a distribution over steps."""

        query = (
            select(KernelSnapshotRow.step)
            .where(KernelSnapshotRow.run_id == run_id, KernelSnapshotRow.layer == layer, KernelSnapshotRow.encoding == RAW)
            .order_by(KernelSnapshotRow.step)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def snapshots(self, run_id: int, layer: str, first_step: int, count: int = 1) -> list[StoredSnapshot]:
        """Up to ``count`` consecutive snapshots of a layer from ``first_step`` on, as float32 bytes: reading
        one step (or a few, to play them) costs one indexed query of a few rows, however many steps the run has."""
        with self.engine.connect() as connection:
            return chains.read_snapshots(connection, run_id, layer, first_step, count)

    def snapshots_at(self, run_id: int, layer: str, steps: Sequence[int]) -> list[StoredSnapshot]:
        """The snapshots of a layer at exactly ``steps`` (those recorded; in step order), in one query: steps
        stored whole (:meth:`self_contained_steps`) cost one row each, a delta its chain."""
        with self.engine.connect() as connection:
            return chains.read_steps(connection, run_id, layer, steps)

    def snapshot(self, run_id: int, layer: str, step: int) -> StoredSnapshot:
        """The snapshot of a layer at exactly ``step``; raises :class:`StoreError` naming the recorded range if there is none."""
        found = self.snapshots(run_id, layer, step, 1)
        if not found or found[0].step != step:
            steps = self.snapshot_steps(run_id, layer)
            if not steps:
                raise _no_such_layer(run_id, layer, self.snapshot_layers(run_id))
            raise StoreError(
                f"run {run_id} has no snapshot of {layer} at step {step} "
                f"({len(steps)} snapshots from step {steps[0]} to {steps[-1]})"
            )
        return found[0]

    def filter_series(
        self, run_id: int, layer: str, filter_index: int, steps: Sequence[int] | None = None
    ) -> tuple[list[int], np.ndarray]:
        """One filter of a layer at every snapshot (or at ``steps``): (steps, values of shape (n, in, kh, kw)).

        Every snapshot is read whole and checked against its checksum, then the filter cut out of it."""
        import numpy as np  # numpy on first use: the store and the spec load without it

        summary = {s.layer: s for s in self.snapshot_summary(run_id)}
        if layer not in summary:
            raise _no_such_layer(run_id, layer, summary)
        out, *filter_shape = summary[layer].shape
        if not 0 <= filter_index < out:
            raise StoreError(f"layer {layer} of run {run_id} has filters 0 to {out - 1}, not {filter_index}")
        size = 4 * int(np.prod(filter_shape))
        start = filter_index * size
        with self.engine.connect() as connection:
            # whole kernels are read, even stored raw, so that each is checked against its checksum
            rows = [(r[0], r[3][start : start + size]) for r in chains.read_layer(connection, run_id, layer, steps)]
        values = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), *filter_shape)
        return [r[0] for r in rows], values

    def kernel_series(self, run_id: int, layer: str) -> KernelSeries:
        """All snapshots of one layer of one run, in step order, as stacked arrays."""
        import numpy as np  # numpy on first use: the store and the spec load without it

        with self.engine.connect() as connection:
            rows = list(chains.read_layer(connection, run_id, layer))
        if not rows:
            raise _no_such_layer(run_id, layer, self.snapshot_layers(run_id))
        shape = rows[0][2]
        for row in rows:
            if row[2] != shape:
                raise StoreError(
                    f"run {run_id}, layer {layer}: the snapshot at step {row[0]} has shape {list(row[2])}, "
                    f"the one at step {rows[0][0]} {list(shape)}; a layer's snapshots must all have one shape"
                )
        kernels = np.frombuffer(b"".join(r[3] for r in rows), dtype="<f4").reshape((len(rows), *shape))
        biases = None
        if all(r[4] is not None for r in rows):
            biases = np.frombuffer(b"".join(r[4] for r in rows), dtype="<f4").reshape(len(rows), shape[0])
        steps = np.array([r[0] for r in rows], dtype=np.int64)
        epochs = np.array([r[1] for r in rows], dtype=np.int64)
        return KernelSeries(run_id, layer, steps, epochs, kernels, biases)


def _no_such_layer(run_id: int, layer: str, known: Iterable[str]) -> StoreError:
    """The error for a layer a run has no snapshots of, naming the layers it has."""
    return StoreError(f"run {run_id} has no snapshots of layer '{layer}' (layers with snapshots: {', '.join(known) or 'none'})")
