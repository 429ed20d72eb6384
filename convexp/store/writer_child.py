"""The writer process itself: the loop a :class:`~convexp.store.writer_process.ProcessWriter` starts in a second
interpreter, which commits each batch it reads through a :class:`~convexp.store.store.Store` of its own."""

from __future__ import annotations

import os
import pickle
import select
import sys

from convexp.errors import StoreError
from convexp.store.background import HEARTBEAT_SECONDS, write_batch
from convexp.store.store import Store
from convexp.store.writer_process import _HEADER, _answer_bytes, _batch_from, _read_exactly


def main() -> None:
    """Serve one run: commit each batch read from standard input, acknowledge it on standard output,
    write the heartbeat when idle; end at ``C`` (close) or when the parent's pipe closes."""

    incoming, outgoing = sys.stdin.fileno(), sys.stdout.fileno()
    store: Store | None = None
    run_id = 0
    owner = (0, "")
    heartbeat = HEARTBEAT_SECONDS
    failed = False  # after a failed write nothing more is written: it would skip a batch
    try:
        while True:
            if store is not None and not failed:
                ready, _, _ = select.select([incoming], [], [], heartbeat)
                if not ready:
                    try:
                        write_batch(store, run_id, None, owner)
                    except BaseException:  # noqa: BLE001 -- the next batch's write says what is wrong
                        pass
                    continue
            header = _read_exactly(incoming, _HEADER.size)
            if header is None:
                return  # the parent is gone: what was received whole is committed
            kind, meta_size, raw_size = _HEADER.unpack(header)
            meta = _read_exactly(incoming, meta_size) if meta_size else bytearray()
            raw = _read_exactly(incoming, raw_size) if raw_size else bytearray()
            if meta is None or raw is None:
                return  # cut off part-way: a partial batch is never written
            error: BaseException | None = None
            try:
                if kind == b"I":
                    url, run_id, heartbeat, owner = pickle.loads(meta)
                    store = Store(url)
                elif kind == b"B":
                    if failed:
                        raise StoreError("an earlier write failed: nothing after it is written")
                    assert store is not None
                    write_batch(store, run_id, _batch_from(bytes(meta), raw), owner)
            except BaseException as exc:  # noqa: BLE001 -- handed to the training process
                error, failed = exc, True
            try:
                os.write(outgoing, _answer_bytes(error, 0.0 if store is None else store.encoder.seconds))
            except BrokenPipeError:
                return  # the parent is gone (killed, or its task cancelled): there is no one to answer

            if kind == b"C":
                # Everything is committed. Leave at once, without closing the database: SQLite would
                # first fold the WAL back into the file, after the parent had moved on; the parent's
                # own connection, the last one, does that when it closes (WAL mode is made for this).
                os._exit(0)
    finally:
        if store is not None:
            store.close()
