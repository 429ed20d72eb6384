"""What a lossless encoding of the kernel bytes would save: measured on a real every-step MNIST run.

    python benchmarks/encoding.py [--db FILE --run ID] [--mnist DIR]

Without --db it records one MNIST epoch of mnist-keras-convnet on torch with kernels at every
step (470 snapshots of conv1 and conv2) into a temporary database first. For each encoding it
prints the bytes per snapshot, the share saved, and the time to decode all snapshots of both
layers back into float32 arrays (what reading a series costs on top of fetching the bytes):

- raw: the stored little-endian float32 bytes;
- zlib: zlib level 6 of the raw bytes;
- shuffle+zlib: the bytes regrouped by significance (all first bytes of the floats, then all
  second bytes, ...; what HDF5's and Blosc's shuffle filter does), then zlib levels 1 and 6;
- xor-delta+shuffle+zlib: each snapshot XOR the previous step's (consecutive steps differ in low
  mantissa bits), then shuffle and zlib, with a full snapshot every 50 steps so that one step
  is never more than 49 decodes away;
- xor-step-0+shuffle+zlib: each snapshot XOR the layer's step-0 snapshot (which thinning always
  keeps), so any step decodes from two rows;
- convexp (what convexp stores, convexp.store.encoding): XOR delta of the previous step, shuffled;
  the two low byte planes kept as they are, the two high ones deflated with zlib's run-length
  strategy at level 1; raw every 10 snapshots and whenever the delta would not be smaller.

Each is also timed encoding all snapshots (the writer thread's cost), and the checksum every row
carries (CRC-32 of the kernel) is timed beside it. Last, the run is packed
into convexp's encoding in a copy of the database and read back through the store (every
snapshot of both layers, `Store.kernel_series`), raw and packed: the read time a user sees.

Writes benchmarks/results/encoding.json. convexp adopts an encoding only if it saves >= 25%
and decoding everything stays under 0.5 s (issue 17).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KEYFRAME = 50


def shuffle(raw: bytes) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(-1, 4).T.tobytes()


def unshuffle(data: bytes) -> bytes:
    return np.frombuffer(data, np.uint8).reshape(4, -1).T.tobytes()


def encodings():
    def xor_encode(series: list[bytes]) -> list[bytes]:
        out = []
        for i, raw in enumerate(series):
            if i % KEYFRAME:
                previous = np.frombuffer(series[i - 1], np.uint32)
                raw = (np.frombuffer(raw, np.uint32) ^ previous).tobytes()
            out.append(zlib.compress(shuffle(raw), 6))
        return out

    def xor_decode(encoded: list[bytes]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for i, data in enumerate(encoded):
            words = np.frombuffer(unshuffle(zlib.decompress(data)), np.uint32)
            out.append(words if i % KEYFRAME == 0 else words ^ out[-1])
        return [w.view(np.float32) for w in out]

    def first_encode(series: list[bytes]) -> list[bytes]:
        first = np.frombuffer(series[0], np.uint32)
        return [
            zlib.compress(shuffle(raw if i == 0 else (np.frombuffer(raw, np.uint32) ^ first).tobytes()), 6)
            for i, raw in enumerate(series)
        ]

    def first_decode(encoded: list[bytes]) -> list[np.ndarray]:
        first = np.frombuffer(unshuffle(zlib.decompress(encoded[0])), np.uint32)
        return [first.view(np.float32)] + [
            (np.frombuffer(unshuffle(zlib.decompress(d)), np.uint32) ^ first).view(np.float32) for d in encoded[1:]
        ]

    def convexp_encode(series: list[bytes]) -> list:
        from convexp.store.encoding import ChainEncoder

        encoder = ChainEncoder("xor-delta")
        out = []
        for step, raw in enumerate(series):
            out.append(encoder.encode(1, "layer", step, raw))
            encoder.commit()
        return out

    def convexp_decode(encoded: list) -> list[np.ndarray]:
        from convexp.store.encoding import decode_chain

        rows = ((step, e.encoding, e.base_step, e.data) for step, e in enumerate(encoded))
        return [np.frombuffer(kernel, np.float32) for _, kernel in decode_chain(rows)]

    return {
        "raw": (lambda s: list(s), lambda e: [np.frombuffer(b, np.float32) for b in e]),
        "zlib-6": (
            lambda s: [zlib.compress(b, 6) for b in s],
            lambda e: [np.frombuffer(zlib.decompress(b), np.float32) for b in e],
        ),
        "shuffle+zlib-1": (
            lambda s: [zlib.compress(shuffle(b), 1) for b in s],
            lambda e: [np.frombuffer(unshuffle(zlib.decompress(b)), np.float32) for b in e],
        ),
        "shuffle+zlib-6": (
            lambda s: [zlib.compress(shuffle(b), 6) for b in s],
            lambda e: [np.frombuffer(unshuffle(zlib.decompress(b)), np.float32) for b in e],
        ),
        f"xor-delta+shuffle+zlib-6 (key every {KEYFRAME})": (xor_encode, xor_decode),
        "xor-step-0+shuffle+zlib-6": (first_encode, first_decode),
        "convexp: xor-delta (high planes deflated, raw every 10)": (convexp_encode, convexp_decode),
    }


def size_of(encoded) -> int:
    return sum(len(getattr(e, "data", e)) for e in encoded)


def read_through_store(db: Path, run_id: int, folder: Path, series: dict[str, list[bytes]]) -> dict[str, dict]:
    """Seconds to read every snapshot of every layer through the store (median of 5) and the stored
    kernel bytes, with the run stored raw and packed into convexp's encoding."""
    import shutil

    from convexp.store import Store
    from convexp.store.space import pack_run, run_sizes

    out = {}
    for name, encoding in (("raw", "raw"), ("packed", "xor-delta")):
        copy = folder / f"{name}.db"
        shutil.copyfile(db, copy)
        with Store(str(copy)) as store:
            store.encoder.encoding = encoding
            # raw: thinning that keeps everything, with the raw encoding, rewrites any delta as raw
            pack_run(store, run_id)
            times = []
            for _ in range(5):
                started = time.perf_counter()
                read = {layer: store.kernel_series(run_id, layer) for layer in series}
                times.append(time.perf_counter() - started)
            for layer, kernels in series.items():  # bit for bit
                assert read[layer].kernels.tobytes() == b"".join(kernels), (name, layer)
            out[name] = {
                "read_all_seconds": statistics.median(times),
                "snapshot_bytes": run_sizes(store, [run_id])[run_id].snapshot_bytes,
            }
    return out


def checksum_cost(series: dict[str, list[bytes]], encode_seconds: float, count: int) -> dict[str, float]:
    """Seconds to checksum every snapshot as the writer does (convexp.store.encoding.snapshot_checksum,
    median of 5), per snapshot, and as a share of the time convexp's encoding takes for them."""
    from convexp.store.encoding import snapshot_checksum

    arrays = [np.frombuffer(raw, "<f4") for kernels in series.values() for raw in kernels]
    times = []
    for _ in range(5):
        started = time.perf_counter()
        for kernel in arrays:
            snapshot_checksum(kernel, None)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"seconds": seconds, "per_snapshot_us": seconds / count * 1e6, "share_of_encode": seconds / encode_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="a database holding an every-step run (default: record one)")
    parser.add_argument("--run", type=int, default=1)
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--json", type=Path, default=HERE / "results" / "encoding.json")
    args = parser.parse_args()

    from convexp.store import Store

    with tempfile.TemporaryDirectory() as folder:
        db = args.db
        if db is None:
            import yaml

            spec = yaml.safe_load((REPO / "experiments.yaml").read_text())["experiments"]["mnist-keras-convnet"]
            spec.update(backend="torch", epochs=1, snapshots={"every": 1})
            experiments = Path(folder) / "e.yaml"
            experiments.write_text(yaml.safe_dump({"experiments": {"every-step": spec}}))
            db = Path(folder) / "every-step.db"
            subprocess.run(
                [sys.executable, "-m", "convexp", "run", str(experiments), "--data-dir", args.mnist, "--db", str(db)],
                cwd=REPO, check=True, capture_output=True,
            )  # fmt: skip
        with Store(str(db), must_exist=True) as store:
            layers = store.snapshot_layers(args.run)
            series = {}
            for layer in layers:
                steps = store.snapshot_steps(args.run, layer)
                series[layer] = [bytes(s.kernel) for s in store.snapshots(args.run, layer, steps[0], len(steps))]
        store_reads = read_through_store(Path(db), args.run, Path(folder), series)
    count = sum(len(s) for s in series.values())
    raw_total = sum(len(b) for s in series.values() for b in s)
    results = {}
    for name, (encode, decode) in encodings().items():
        started = time.perf_counter()
        encoded = {layer: encode(s) for layer, s in series.items()}
        encode_seconds = time.perf_counter() - started
        size = sum(size_of(e) for e in encoded.values())
        times = []
        for _ in range(5):
            started = time.perf_counter()
            decoded = {layer: decode(e) for layer, e in encoded.items()}
            times.append(time.perf_counter() - started)
        for layer, arrays in decoded.items():  # lossless, bit for bit
            assert all(a.tobytes() == b for a, b in zip(arrays, series[layer])), name
        results[name] = {
            "bytes_per_snapshot": size / count,
            "saved": 1 - size / raw_total,
            "decode_all_seconds": statistics.median(times),
            "encode_all_seconds": encode_seconds,
        }

    print(
        f"{count} kernel snapshots ({', '.join(f'{len(s)} x {layer}' for layer, s in series.items())}), {raw_total / 1e6:.1f} MB raw\n"
    )
    print(f"{'encoding':58} {'bytes/snapshot':>15} {'saved':>7} {'encode all':>11} {'decode all':>11}")
    for name, r in results.items():
        print(
            f"{name:58} {r['bytes_per_snapshot']:15,.0f} {r['saved']:7.1%} "
            f"{r['encode_all_seconds']:10.3f}s {r['decode_all_seconds']:10.3f}s"
        )
    checksum = checksum_cost(
        series, results["convexp: xor-delta (high planes deflated, raw every 10)"]["encode_all_seconds"], count
    )
    print(
        f"\nchecksums (CRC-32 of each kernel, what the writer adds per row): {checksum['seconds']:.3f} s for all, "
        f"{checksum['per_snapshot_us']:.1f} us a snapshot, {checksum['share_of_encode']:.1%} of convexp's encoding time"
    )
    print("\nread back through the store (Store.kernel_series of every layer, median of 5):")
    for name, r in store_reads.items():
        print(f"  stored {name}: {r['snapshot_bytes'] / 1e6:.1f} MB of kernels and biases, read in {r['read_all_seconds']:.3f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    results_json = {"snapshots": count, "raw_bytes": raw_total, "encodings": results, "checksum": checksum, "store": store_reads}
    args.json.write_text(json.dumps(results_json, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
