"""Reading a layer's kernel snapshots back as float32 bytes, whatever their encoding.

A snapshot stored as an XOR delta (see :mod:`convexp.store.encoding`) decodes only after the
snapshots before it back to the last raw one, so reads start at that row; a chain is at most
``KEYFRAME_EVERY`` rows long, so reading one step costs at most that many rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, func, select

from convexp.store.encoding import RAW, decode_chain
from convexp.store.models import KernelSnapshot
from convexp.store.records import StoredSnapshot

_COLUMNS = (
    KernelSnapshot.step,
    KernelSnapshot.epoch,
    KernelSnapshot.shape,
    KernelSnapshot.encoding,
    KernelSnapshot.base_step,
    KernelSnapshot.kernel,
    KernelSnapshot.bias,
)


def _of_layer(run_id: int, layer: str):
    return (KernelSnapshot.run_id == run_id, KernelSnapshot.layer == layer)


def read_snapshots(connection: Connection, run_id: int, layer: str, first_step: int, count: int) -> list[StoredSnapshot]:
    """Up to ``count`` consecutive snapshots of a layer from ``first_step`` on, decoded: the rows from
    the raw snapshot at or before ``first_step`` are read, and those before ``first_step`` dropped."""
    import json

    chain_start = (
        select(func.max(KernelSnapshot.step))
        .where(*_of_layer(run_id, layer), KernelSnapshot.step <= first_step, KernelSnapshot.encoding == RAW)
        .scalar_subquery()
    )
    start = func.coalesce(chain_start, first_step)
    before = connection.execute(
        select(
            start,
            select(func.count())
            .where(*_of_layer(run_id, layer), KernelSnapshot.step >= start, KernelSnapshot.step < first_step)
            .scalar_subquery(),
        )
    ).one()
    query = (
        select(*_COLUMNS)
        .where(*_of_layer(run_id, layer), KernelSnapshot.step >= before[0])
        .order_by(KernelSnapshot.step)
        .limit(before[1] + count)
    )
    rows = connection.execute(query).all()
    decoded = decode_chain((r.step, r.encoding, r.base_step, r.kernel) for r in rows)
    return [
        StoredSnapshot(layer, r.step, r.epoch, tuple(json.loads(r.shape)), kernel, None if r.bias is None else bytes(r.bias))
        for r, (_, kernel) in zip(rows, decoded)
        if r.step >= first_step
    ]


def read_layer(connection: Connection, run_id: int, layer: str, steps: Sequence[int] | None = None) -> Iterator[tuple]:
    """(step, epoch, shape JSON, kernel bytes, bias bytes or None) of a layer's snapshots in step order
    (all, or those at ``steps``), decoded; the rows a delta needs are read even when not wanted."""
    rows = connection.execute(select(*_COLUMNS).where(*_of_layer(run_id, layer)).order_by(KernelSnapshot.step)).all()
    wanted = None if steps is None else set(steps)
    for row, (step, kernel) in zip(rows, decode_chain((r.step, r.encoding, r.base_step, r.kernel) for r in rows)):
        if wanted is None or step in wanted:
            yield step, row.epoch, row.shape, kernel, None if row.bias is None else bytes(row.bias)


def all_raw(connection: Connection, run_id: int, layer: str) -> bool:
    """Whether every snapshot of a layer holds plain float32 bytes (so SQL can slice them)."""
    query = select(func.count()).where(*_of_layer(run_id, layer), KernelSnapshot.encoding != RAW)
    return connection.execute(query).scalar_one() == 0
