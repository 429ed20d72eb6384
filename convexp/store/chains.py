"""Reading a layer's kernel snapshots back as float32 bytes, whatever their encoding.

A snapshot stored as an XOR delta (see :mod:`convexp.store.encoding`) decodes only after the
snapshots before it back to the last raw one, so reads start at that row; a chain is at most
``KEYFRAME_EVERY`` rows long, so reading one step costs at most that many rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from convexp.errors import DamagedSnapshotError, StoreError
from convexp.store.encoding import RAW, UndecodableSnapshot, checksum_problem, decode_row
from convexp.store.models import KernelSnapshotRow
from convexp.store.records import StoredSnapshot

_COLUMNS = (
    KernelSnapshotRow.step,
    KernelSnapshotRow.epoch,
    KernelSnapshotRow.shape,
    KernelSnapshotRow.encoding,
    KernelSnapshotRow.base_step,
    KernelSnapshotRow.kernel,
    KernelSnapshotRow.bias,
    KernelSnapshotRow.checksum,
)


#: Rows of a layer :func:`layer_rows` reads at a time, so a long run is never all in memory.
CHUNK = 256


def layer_rows(connection: Connection, run_id: int, layer: str) -> Iterator[Any]:
    """A layer's snapshot rows (every column readers use) in step order, read a chunk at a time; rows at
    or before the last one yielded may be changed or deleted meanwhile (thinning does)."""
    after = None
    while True:
        query = select(*_COLUMNS).where(*_of_layer(run_id, layer))
        if after is not None:
            query = query.where(KernelSnapshotRow.step > after)
        rows = connection.execute(query.order_by(KernelSnapshotRow.step).limit(CHUNK)).all()
        if not rows:
            return
        after = rows[-1].step
        yield from rows


def read_row(previous: tuple[int, Any] | None, row: Any) -> tuple[Any, bytes, bytes | None]:
    """One stored row (step, encoding, base_step, kernel, bias, checksum) as (uint32 words, float32 kernel
    bytes, bias bytes or None), given the (step, words) of the row before it in its layer (None at a
    chain's start); raises :class:`UndecodableSnapshot` naming the step when it does not decode or does
    not match its checksum."""
    words = decode_row(previous, row.step, row.encoding, row.base_step, row.kernel)
    kernel = words.tobytes()
    bias = None if row.bias is None else bytes(row.bias)
    problem = checksum_problem(kernel, bias, row.checksum)
    if problem is not None:
        raise UndecodableSnapshot(row.step, problem)
    return words, kernel, bias


def shape_problem(shape_text: str, kernel: bytes, bias: bytes | None) -> tuple[tuple[int, ...], str | None]:
    """A row's kernel shape (from its ``shape`` JSON), and why it does not fit the bytes the row decoded
    to (None when it does)."""

    try:
        shape = tuple(int(n) for n in json.loads(shape_text))
    except (ValueError, TypeError):
        return (), f"its shape {shape_text!r} is not a list of sizes"
    if 4 * math.prod(shape) != len(kernel):
        return shape, f"its kernel holds {len(kernel) // 4} values where its shape {list(shape)} has {math.prod(shape)}"
    if bias is not None and shape and len(bias) != 4 * shape[0]:
        return shape, f"its bias holds {len(bias) / 4:g} values where its {shape[0]} filters need {shape[0]}"
    return shape, None


def verified(
    run_id: int, layer: str, rows: Iterable[Any], wanted_step: int | None = None
) -> Iterator[tuple[Any, bytes, bytes | None]]:
    """(row, float32 kernel bytes, bias bytes or None) for a layer's rows in step order from a chain's
    start, each decoded and checked against its checksum (:func:`read_row`): raises
    :class:`DamagedSnapshotError` naming run, layer and step at the first row that does not decode or
    does not match (``wanted_step``: the step the caller asked for, to name too)."""
    previous = None
    for row in rows:
        try:
            words, kernel, bias = read_row(previous, row)
        except UndecodableSnapshot as exc:
            raise DamagedSnapshotError(run_id, layer, exc.step, exc.reason, wanted_step) from None
        previous = (row.step, words)
        yield row, kernel, bias


def may_vouch(row: Any, base_matched: bool) -> bool:
    """Whether ``row``, recorded without a checksum and decoded, may be given one (``db check --fix``, thin, pack):
    a raw row stands alone; an XOR delta only when the row it decodes from (``base_matched``) matched a checksum
    of its own, since a delta decoded from an unverified base may be damaged unseen."""
    return row.encoding == RAW or base_matched


def _of_layer(run_id: int, layer: str):
    return (KernelSnapshotRow.run_id == run_id, KernelSnapshotRow.layer == layer)


def read_snapshots(connection: Connection, run_id: int, layer: str, first_step: int, count: int) -> list[StoredSnapshot]:
    """Up to ``count`` consecutive snapshots of a layer from ``first_step`` on, decoded and verified: the
    rows from the raw snapshot at or before ``first_step`` are read, and those before ``first_step`` dropped."""
    chain_start = (
        select(func.max(KernelSnapshotRow.step))
        .where(*_of_layer(run_id, layer), KernelSnapshotRow.step <= first_step, KernelSnapshotRow.encoding == RAW)
        .scalar_subquery()
    )
    start = func.coalesce(chain_start, first_step)
    before = connection.execute(
        select(
            start,
            select(func.count())
            .where(*_of_layer(run_id, layer), KernelSnapshotRow.step >= start, KernelSnapshotRow.step < first_step)
            .scalar_subquery(),
        )
    ).one()
    query = (
        select(*_COLUMNS)
        .where(*_of_layer(run_id, layer), KernelSnapshotRow.step >= before[0])
        .order_by(KernelSnapshotRow.step)
        .limit(before[1] + count)
    )
    rows = connection.execute(query).all()
    return [
        StoredSnapshot(layer, r.step, r.epoch, _readable(run_id, layer, r, kernel, bias), kernel, bias, r.checksum)
        for r, kernel, bias in verified(run_id, layer, rows, first_step)
        if r.step >= first_step
    ]


def read_steps(connection: Connection, run_id: int, layer: str, steps: Sequence[int]) -> list[StoredSnapshot]:
    """The snapshots of a layer at exactly ``steps`` (those recorded), in step order, decoded and verified:
    one query for them all, and a delta's chain read only for a step stored as a delta."""
    rows = connection.execute(
        select(*_COLUMNS)
        .where(*_of_layer(run_id, layer), KernelSnapshotRow.step.in_(list(steps)))
        .order_by(KernelSnapshotRow.step)
    ).all()
    found: list[StoredSnapshot] = []
    for row in rows:
        if row.encoding != RAW:
            found += read_snapshots(connection, run_id, layer, row.step, 1)
            continue
        for r, kernel, bias in verified(run_id, layer, [row], row.step):
            found.append(
                StoredSnapshot(layer, r.step, r.epoch, _readable(run_id, layer, r, kernel, bias), kernel, bias, r.checksum)
            )
    return found


def _readable(run_id: int, layer: str, row: Any, kernel: bytes, bias: bytes | None) -> tuple[int, ...]:
    """A verified row's shape, once it is known to fit its bytes and to hold finite values only; else
    one line naming run, layer and step (convexp records only finite kernels: such a row comes from
    elsewhere, and no analysis of it holds)."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    shape, problem = shape_problem(row.shape, kernel, bias)
    if problem is not None:
        raise DamagedSnapshotError(run_id, layer, row.step, problem)
    for part, data in (("kernel", kernel), ("bias", bias)):
        if data is not None and not np.isfinite(np.frombuffer(data, dtype="<f4")).all():
            raise StoreError(
                f"run {run_id}, layer {layer}: the {part} at step {row.step} holds NaN or infinity; "
                "convexp records and analyses finite kernels only"
            )
    return shape


def read_layer(connection: Connection, run_id: int, layer: str, steps: Sequence[int] | None = None) -> Iterator[tuple]:
    """(step, epoch, shape, kernel bytes, bias bytes or None) of a layer's snapshots in step order (all,
    or those at ``steps``), decoded and verified; the rows a delta needs are read even when not wanted."""
    rows = connection.execute(select(*_COLUMNS).where(*_of_layer(run_id, layer)).order_by(KernelSnapshotRow.step)).all()
    wanted = None if steps is None else set(steps)
    for row, kernel, bias in verified(run_id, layer, rows):
        if wanted is None or row.step in wanted:
            yield row.step, row.epoch, _readable(run_id, layer, row, kernel, bias), kernel, bias
