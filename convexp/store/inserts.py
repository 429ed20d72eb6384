"""The recorder's inserts: a batch of metrics or kernel snapshots in one executemany."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert

from convexp.store.encoding import ChainEncoder, snapshot_checksum
from convexp.store.records import SnapshotToWrite

#: The columns :func:`insert_many` fills, in the order of its tuples.
_INSERTED = {
    "metrics": ("run_id", "step", "epoch", "name", "value", "wall_time"),
    "kernel_snapshots": ("run_id", "layer", "step", "epoch", "shape", "kernel", "bias", "encoding", "base_step", "checksum"),
}
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def insert_many(connection: Connection, model: Any, rows: list[tuple]) -> None:
    """Insert rows (tuples in the order of ``_INSERTED``) with the driver's own executemany.

    This is the recorder's hot path, run for every step of every run: going straight to the
    driver skips SQLAlchemy's per-row parameter processing, which cost several times the insert
    itself. Table and column names come from the models; drivers with another paramstyle take
    SQLAlchemy's insert."""
    table = model.__table__
    columns = _INSERTED[table.name]
    placeholder = _PLACEHOLDERS.get(connection.dialect.paramstyle)
    if placeholder is None:
        connection.execute(insert(table), [dict(zip(columns, row)) for row in rows])
        return
    statement = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([placeholder] * len(columns))})"
    connection.exec_driver_sql(statement, rows)


def snapshot_row(run_id: int, snapshot: SnapshotToWrite, encoder: ChainEncoder) -> tuple:
    """A snapshot as the tuple :func:`insert_many` writes into ``kernel_snapshots``: its kernel encoded,
    and the checksum of the kernel and bias it stands for."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    kernel = np.ascontiguousarray(snapshot.kernel, dtype="<f4")
    bias = None if snapshot.bias is None else np.ascontiguousarray(snapshot.bias, dtype="<f4").tobytes()
    stored = encoder.encode(run_id, snapshot.layer, snapshot.step, kernel)
    shape = _SHAPES.get(kernel.shape) or _SHAPES.setdefault(kernel.shape, json.dumps(list(kernel.shape)))
    checksum = snapshot_checksum(kernel.data, bias)
    row = (run_id, snapshot.layer, snapshot.step, snapshot.epoch, shape, stored.data, bias, stored.encoding, stored.base_step)
    return (*row, checksum)


#: Kernel shapes as the ``shape`` column writes them, made once per shape.
_SHAPES: dict[tuple[int, ...], str] = {}
