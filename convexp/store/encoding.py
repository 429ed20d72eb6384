"""How kernel snapshots are stored: raw float32 bytes, or XOR deltas against the layer's previous snapshot.

Between consecutive steps a kernel changes in the low bits of each float's mantissa, so the XOR
of two consecutive snapshots has mostly zero bytes in its high positions. A snapshot with
``encoding = 'xor-zstd'`` (what convexp writes) holds, for its ``n`` float32 values,

    planes[0] + planes[1] + zstd(planes[2] + planes[3])

where ``planes[i]`` is byte ``i`` (0 = least significant) of every word of
``words XOR base_words``, ``n`` bytes each; ``words`` are the snapshot's little-endian float32
kernel values read as uint32 and ``base_words`` those of the same run and layer at
``base_step`` (the layer's previous snapshot, itself raw or an XOR delta). The two low planes
are close to random and stored as they are; the two high ones, mostly zeros, are compressed as one
Zstandard frame at level 1 (``zstandard.ZstdDecompressor().decompress`` reads them). Rows written
before convexp 0.x.45 have ``encoding = 'xor-delta'``: the same planes, the high ones deflated (zlib's
format, ``zlib.decompress``); they keep reading. Zstandard replaced deflate because on the kernels of an
every-step ResNet-18 it encodes about 2.5 times as fast and decodes twice as fast, in slightly fewer bytes
(measured by benchmarks/encoding.py; the numbers are in docs/benchmarks.md).

A row with ``encoding = 'raw'`` holds the float32 bytes themselves and starts a chain: every
layer's first snapshot (step 0 included), every :data:`KEYFRAME_EVERY`-th one after it, and any whose
delta would not be smaller are raw, so one step decodes from at most that many rows and no snapshot
takes more than its raw bytes; kernels under :data:`MIN_DELTA_BYTES` are always raw. Biases are always raw.

To read a kernel without convexp (sqlite3 + numpy, and zstandard for ``xor-zstd`` rows), see the
``read_kernel`` recipe in docs/guides/database.md, or :func:`decode_chain` here.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from convexp.errors import StoreError

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Buffer

RAW = "raw"
#: The high byte planes deflated (zlib): what convexp wrote before ``xor-zstd``; still read.
XOR_DELTA = "xor-delta"
#: The high byte planes as one Zstandard frame: what convexp writes.
XOR_ZSTD = "xor-zstd"
ENCODINGS = (RAW, XOR_ZSTD, XOR_DELTA)
#: The Zstandard level of the high planes: level 1 is the fastest that keeps deflate's size.
ZSTD_LEVEL = 1
#: A raw snapshot starts a new chain after this many snapshots of a layer.
KEYFRAME_EVERY = 10
#: Kernels smaller than this are stored raw: their deltas would save a few hundred bytes a step
#: while costing the writer thread about as much time as a kernel ten times larger.
MIN_DELTA_BYTES = 8192
#: Where the recorder's encoding is chosen: ``raw`` stores every snapshot as plain float32 bytes.
ENCODING_ENV = "CONVEXP_SNAPSHOT_ENCODING"


def default_encoding() -> str:
    """The encoding new snapshots are written with: ``CONVEXP_SNAPSHOT_ENCODING``, or XOR deltas with Zstandard."""
    chosen = os.environ.get(ENCODING_ENV, XOR_ZSTD)
    if chosen not in ENCODINGS:
        raise StoreError(f"{ENCODING_ENV}={chosen!r} is not a snapshot encoding; use one of {', '.join(ENCODINGS)}")
    return chosen


def _words(kernel: bytes | np.ndarray) -> np.ndarray:
    import numpy as np  # numpy on first use: the store and the spec load without it

    if isinstance(kernel, bytes | bytearray | memoryview):
        return np.frombuffer(kernel, dtype="<u4")
    return np.ascontiguousarray(kernel, dtype="<f4").reshape(-1).view("<u4")


def xor_delta(words: np.ndarray, base: np.ndarray, encoding: str = XOR_ZSTD) -> bytes | memoryview:
    """The stored bytes of ``words`` as an XOR delta against ``base`` (both little-endian uint32 arrays), its
    high planes compressed as ``encoding`` says (``xor-zstd``, or the older ``xor-delta``).

    Written where it runs beside training (the recorder's writer thread): every pass over the kernel is a numpy
    copy or a codec call, which let go of Python's lock, so training's own Python is not kept waiting; the
    ``xor-zstd`` result is a view of one buffer, not a further copy into ``bytes``."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    if words.shape != base.shape:
        raise StoreError(f"a kernel of {words.size} values cannot be a delta of one of {base.size}")
    planes = (words ^ base).view("u1").reshape(-1, 4).T
    high = np.ascontiguousarray(planes[2:])
    if encoding == XOR_ZSTD:
        packed = _zstd().compress(high)
        low = 2 * words.size
        stored = np.empty(low + len(packed), dtype="u1")
        stored[:low].reshape(2, -1)[...] = planes[:2]
        stored[low:] = np.frombuffer(packed, dtype="u1")
        return stored.data
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)  # Z_RLE: the zero runs are what there is to find
    return planes[:2].tobytes() + packer.compress(high.data) + packer.flush()


def undo_xor_delta(data: bytes, base: np.ndarray, encoding: str = XOR_ZSTD) -> np.ndarray:
    """The uint32 words an XOR delta (``data``, of ``encoding``) encodes against ``base``."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    low = 2 * base.size
    planes = np.empty((4, base.size), dtype="u1")
    planes[:2] = np.frombuffer(data, dtype="u1", count=low).reshape(2, -1)
    packed = memoryview(data)[low:]
    if encoding == XOR_ZSTD:
        unpacked = _unzstd().decompress(packed, max_output_size=low)
    else:
        unpacked = zlib.decompress(packed)
    high = np.frombuffer(unpacked, dtype="u1")
    if high.size != low:
        raise StoreError(f"an XOR delta of {high.size // 2} values against a kernel of {base.size}")
    planes[2:] = high.reshape(2, -1)
    return planes.T.copy().view("<u4").reshape(-1) ^ base


#: Each thread's Zstandard compressor and decompressor (they are not shared safely between threads); a
#: thread's go with it, where a table keyed by thread id would keep one pair for every writer thread ever run.
_codecs = threading.local()


def _zstd():
    """This thread's Zstandard compressor at :data:`ZSTD_LEVEL`."""
    import zstandard  # on first use: the store and the spec load without it

    if not hasattr(_codecs, "compressor"):
        _codecs.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return _codecs.compressor


def _unzstd():
    """This thread's Zstandard decompressor."""
    import zstandard

    if not hasattr(_codecs, "decompressor"):
        _codecs.decompressor = zstandard.ZstdDecompressor()
    return _codecs.decompressor


@dataclass(frozen=True)
class EncodedKernel:
    """A kernel as a row stores it: its encoding, the step it is a delta of (None when raw), its bytes."""

    encoding: str
    base_step: int | None
    data: bytes | memoryview


@dataclass
class _Link:
    step: int
    words: np.ndarray
    since_keyframe: int


class ChainEncoder:
    """Encodes the snapshots one writer records, per (run, layer), as chains of XOR deltas.

    :meth:`encode` works on a pending copy of the chains; :meth:`commit` adopts it once the
    transaction holding those rows has committed and :meth:`rollback` drops it, so a failed write
    never leaves a chain pointing at a row that is not there. A layer the encoder has not seen
    (a new run, a resumed one, another process) starts with a raw snapshot."""

    def __init__(self, encoding: str | None = None, keyframe_every: int = KEYFRAME_EVERY, min_bytes: int = MIN_DELTA_BYTES):
        self.encoding = default_encoding() if encoding is None else encoding
        self.keyframe_every, self.min_bytes = keyframe_every, min_bytes
        self._chains: dict[tuple[int, str], _Link] = {}
        self._pending: dict[tuple[int, str], _Link] = {}
        #: Wall seconds spent writing the snapshots this encoder encoded: their encoding, inserts and commits
        #: (counted by :meth:`Store.record`; what a recording budget charges their bytes with).
        self.seconds = 0.0

    def encode(self, run_id: int, layer: str, step: int, kernel: bytes | np.ndarray) -> EncodedKernel:
        """A snapshot's stored form (``kernel``: float32 values or their little-endian bytes); snapshots of
        one layer come in increasing step order (a step at or before the last one starts a new chain)."""
        words = _words(kernel)
        key = (run_id, layer)
        last = self._pending.get(key) or self._chains.get(key)
        if (
            self.encoding == RAW
            or words.nbytes < self.min_bytes
            or last is None
            or last.step >= step
            or last.words.shape != words.shape
            or last.since_keyframe + 1 >= self.keyframe_every
        ):
            self._pending[key] = _Link(step, words.copy(), 0)
            return EncodedKernel(RAW, None, words.tobytes())
        delta = xor_delta(words, last.words, self.encoding)
        if len(delta) >= words.nbytes:  # a tiny kernel, or one that moved a lot: raw is smaller
            self._pending[key] = _Link(step, words.copy(), 0)
            return EncodedKernel(RAW, None, words.tobytes())
        self._pending[key] = _Link(step, words.copy(), last.since_keyframe + 1)
        return EncodedKernel(self.encoding, last.step, delta)

    def commit(self) -> None:
        """The rows encoded since the last commit or rollback are in the database: chain on from them."""
        self._chains.update(self._pending)
        self._pending.clear()

    def rollback(self) -> None:
        """The rows encoded since the last commit were not written: forget them."""
        self._pending.clear()

    def forget(self, run_id: int) -> None:
        """Start the run's layers afresh (its rows were deleted or rewritten by someone else)."""
        for chains in (self._chains, self._pending):
            for key in [k for k in chains if k[0] == run_id]:
                del chains[key]


def _zstd_error() -> type[Exception]:
    """zstandard's error class (imported when a row fails to decode, not before)."""
    import zstandard

    return zstandard.ZstdError


class UndecodableSnapshot(StoreError):
    """A stored snapshot that cannot be turned back into the kernel that was written (``reason`` says why)."""

    def __init__(self, step: int, reason: str):
        self.step, self.reason = step, reason
        super().__init__(f"the snapshot at step {step} {reason}")


def snapshot_checksum(kernel: Buffer, bias: Buffer | None) -> int:
    """What a row's ``checksum`` holds: the CRC-32 (zlib's) of the snapshot's little-endian float32
    kernel bytes, continued over its bias bytes when it has a bias -- the decoded values, so a
    damaged raw row, a damaged delta and a delta applied to the wrong base are all caught."""
    crc = zlib.crc32(kernel)
    return crc if bias is None else zlib.crc32(bias, crc)


def decode_row(previous: tuple[int, np.ndarray] | None, step: int, encoding: str, base_step: int | None, data) -> np.ndarray:
    """The uint32 words of one stored kernel, given the (step, words) of the row before it in its
    layer (None at a chain's start); raises :class:`UndecodableSnapshot` naming the step."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    if encoding == RAW:
        if len(data) % 4:
            raise UndecodableSnapshot(step, f"holds {len(data)} bytes, not a whole number of float32 values")
        return np.frombuffer(bytes(data), dtype="<u4")
    if encoding not in (XOR_ZSTD, XOR_DELTA):
        raise UndecodableSnapshot(step, f"has an unknown encoding {encoding!r}")
    if previous is None or previous[0] != base_step:
        after = "the chain's start" if previous is None else f"step {previous[0]}"
        raise UndecodableSnapshot(step, f"is a delta of step {base_step}, but follows {after}")
    try:
        return undo_xor_delta(bytes(data), previous[1], encoding)
    except (zlib.error, ValueError, StoreError, _zstd_error()) as exc:
        raise UndecodableSnapshot(step, f"does not decode: {exc}") from None


def checksum_problem(kernel: bytes, bias: bytes | None, checksum: int | None) -> str | None:
    """Why a decoded snapshot is not the one written (its checksum differs), or None when it matches
    or was recorded before snapshots carried checksums (``checksum`` is None)."""
    if checksum is None or snapshot_checksum(kernel, bias) == checksum:
        return None
    return "its kernel and bias do not match the checksum written with them"


def decode_chain(rows: Iterable[tuple[int, str, int | None, bytes]]) -> Iterator[tuple[int, bytes]]:
    """(step, little-endian float32 kernel bytes) for rows of one run and layer given as
    (step, encoding, base_step, stored kernel bytes) in step order, starting at a raw row.

    Raises :class:`UndecodableSnapshot` (a :class:`StoreError`) naming the step of a row that does
    not decode, as when a delta's base is not the row before it (a chain cut)."""
    previous: tuple[int, np.ndarray] | None = None
    for step, encoding, base_step, data in rows:
        words = decode_row(previous, step, encoding, base_step, data)
        previous = (step, words)
        yield step, words.tobytes()
