"""What a lossless encoding of the kernel bytes saves, and costs: measured on real every-step runs.

    python benchmarks/encoding.py [--db FILE --run ID] [--mnist DIR] [--no-resnet | --resnet-steps N]

Two sources of kernels, every step:

- MNIST: without --db it records one MNIST epoch of mnist-keras-convnet on torch with kernels at every
  step (470 snapshots of conv1 and conv2) into a temporary database first;
- ResNet-18: the width-16 ResNet-18 of examples/recording/torch_resnet18.py (20 conv layers, 2.8 MB of
  kernels a step) trained 40 steps (--resnet-steps) of SGD with momentum on random batches of 32 (needs torch;
  --no-resnet leaves it out).

For each encoding it prints the bytes per snapshot (and as a share of raw), and the speed of encoding and
decoding every snapshot (MB of raw kernel a second, one thread):

- raw: the stored little-endian float32 bytes;
- zlib-6 and shuffle+zlib-6: the bytes as they are, or regrouped by significance (all first bytes of the
  floats, then all second bytes...; what HDF5's and Blosc's shuffle filter does), then zlib;
- xor+shuffle+zlib-6 (key every 50): each snapshot XOR the previous step's (consecutive steps differ in
  low mantissa bits), shuffled, zlib;
- blosc2 zstd-1 shuffle, xor and shuffle+lz4, xor: the XOR delta through a library made for numeric arrays
  (Blosc2's shuffle filter and Zstandard, one thread) or numpy's shuffle and LZ4; measured where blosc2 and
  lz4 are installed (neither is a convexp dependency);
- convexp before (xor-delta): convexp's delta layout (two low byte planes as they are, the two high ones
  deflated at level 1 with the run-length strategy), raw every 10 snapshots;
- convexp (xor-zstd): the same layout, the high planes as one Zstandard frame at level 1: what convexp writes.

The checksum every row carries (CRC-32 of the kernel) is timed beside them. Last, the MNIST run is packed
into convexp's encoding in a copy of the database and read back through the store (every snapshot of both
layers, `Store.kernel_series`), raw and packed: the read time a user sees.

Writes benchmarks/results/encoding.json. convexp adopts an encoding that stores no more bytes and costs less
CPU, or saves enough bytes to pay for its CPU (issue 45; issue 17 asked >= 25% saved, decoding everything
under 0.5 s).
"""

from __future__ import annotations

import argparse
import importlib.util
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

    def keyed(compress, decompress, every: int = 10):
        """An XOR delta of the previous snapshot through ``compress``, raw every ``every``."""

        def encode(series: list[bytes]) -> list[bytes]:
            return [
                compress(np.frombuffer(raw, np.uint32) ^ np.frombuffer(series[i - 1], np.uint32) if i % every else raw)
                for i, raw in enumerate(series)
            ]

        def decode(encoded: list[bytes]) -> list[np.ndarray]:
            out: list[np.ndarray] = []
            for i, data in enumerate(encoded):
                words = np.frombuffer(decompress(data), np.uint32)
                out.append(words if i % every == 0 else words ^ out[-1])
            return [w.view(np.float32) for w in out]

        return encode, decode

    def convexp(encoding: str):
        from convexp.store.encoding import ChainEncoder, decode_chain

        def encode(series: list[bytes]) -> list:
            encoder = ChainEncoder(encoding)
            out = []
            for step, raw in enumerate(series):
                out.append(encoder.encode(1, "layer", step, raw))
                encoder.commit()
            return out

        def decode(encoded: list) -> list[np.ndarray]:
            rows = ((step, e.encoding, e.base_step, e.data) for step, e in enumerate(encoded))
            return [np.frombuffer(kernel, np.float32) for _, kernel in decode_chain(rows)]

        return encode, decode

    found = {
        "raw": (lambda s: list(s), lambda e: [np.frombuffer(b, np.float32) for b in e]),
        "zlib-6": (
            lambda s: [zlib.compress(b, 6) for b in s],
            lambda e: [np.frombuffer(zlib.decompress(b), np.float32) for b in e],
        ),
        "shuffle+zlib-6": (
            lambda s: [zlib.compress(shuffle(b), 6) for b in s],
            lambda e: [np.frombuffer(unshuffle(zlib.decompress(b)), np.float32) for b in e],
        ),
        f"xor+shuffle+zlib-6 (key every {KEYFRAME})": (xor_encode, xor_decode),
    }
    if importlib.util.find_spec("blosc2"):
        import blosc2

        blosc2.set_nthreads(1)
        found["blosc2 zstd-1 shuffle, xor (key every 10)"] = keyed(
            lambda w: blosc2.compress2(
                np.ascontiguousarray(w).tobytes(), codec=blosc2.Codec.ZSTD, clevel=1, filters=[blosc2.Filter.SHUFFLE], typesize=4
            ),
            blosc2.decompress2,
        )
    if importlib.util.find_spec("lz4"):
        import lz4.frame

        found["shuffle+lz4, xor (key every 10)"] = keyed(
            lambda w: lz4.frame.compress(shuffle(np.ascontiguousarray(w).tobytes())),
            lambda d: unshuffle(lz4.frame.decompress(d)),
        )
    found["convexp before: xor-delta (high planes deflated, raw every 10)"] = convexp("xor-delta")
    found[CONVEXP] = convexp("xor-zstd")
    return found


#: What convexp writes, as the tables name it.
CONVEXP = "convexp: xor-zstd (high planes zstd-1, raw every 10)"


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
    parser.add_argument("--no-resnet", dest="resnet", action="store_false", help="measure the MNIST run's kernels only")
    parser.add_argument("--resnet-steps", type=int, default=40, help="the ResNet-18's training steps (default 40)")
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
    results_json = {**measure_encodings(series), "store": store_reads}
    print("\nread back through the store (Store.kernel_series of every layer, median of 5):")
    for name, r in store_reads.items():
        print(f"  stored {name}: {r['snapshot_bytes'] / 1e6:.1f} MB of kernels and biases, read in {r['read_all_seconds']:.3f} s")
    if args.resnet and importlib.util.find_spec("torch"):
        print("\nResNet-18, width 16, every step:")
        results_json["resnet18"] = measure_encodings(resnet_series(args.resnet_steps))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results_json, indent=2))
    print(f"\nwrote {args.json}")


def resnet_series(steps: int = 40) -> dict[str, list[bytes]]:
    """The conv kernels of examples/recording/torch_resnet18.py's ResNet-18 (width 16) at each of ``steps`` + 1 steps."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO / "examples" / "recording"))
    from torch_resnet18 import ResNet18

    torch.manual_seed(0)
    model = ResNet18(16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    convs = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    series: dict[str, list[bytes]] = {name: [] for name in convs}
    for step in range(steps + 1):
        if step:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        for name, m in convs.items():
            series[name].append(m.weight.detach().numpy().astype("<f4").tobytes())
    return series


def measure_encodings(series: dict[str, list[bytes]]) -> dict:
    """Bytes, encode and decode speed of every encoding over ``series`` (layer -> snapshots' raw bytes), printed."""
    count = sum(len(s) for s in series.values())
    raw_total = sum(len(b) for s in series.values() for b in s)
    results = {}
    for name, (encode, decode) in encodings().items():
        started = time.perf_counter()
        encoded = {layer: encode(s) for layer, s in series.items()}
        encode_seconds = time.perf_counter() - started
        size = sum(size_of(e) for e in encoded.values())
        times = []
        for _ in range(3):
            started = time.perf_counter()
            decoded = {layer: decode(e) for layer, e in encoded.items()}
            times.append(time.perf_counter() - started)
        for layer, arrays in decoded.items():  # lossless, bit for bit
            assert all(a.tobytes() == b for a, b in zip(arrays, series[layer])), name
        decode_seconds = statistics.median(times)
        results[name] = {
            "bytes_per_snapshot": size / count,
            "of_raw": size / raw_total,
            "saved": 1 - size / raw_total,
            "decode_all_seconds": decode_seconds,
            "encode_all_seconds": encode_seconds,
            "encode_mb_s": raw_total / 1e6 / max(encode_seconds, 1e-9),
            "decode_mb_s": raw_total / 1e6 / max(decode_seconds, 1e-9),
        }
    layers = f"{len(series)} layers" if len(series) > 3 else ", ".join(f"{len(s)} x {layer}" for layer, s in series.items())
    print(f"{count} kernel snapshots ({layers}), {raw_total / 1e6:.1f} MB raw\n")
    print(f"{'encoding':62} {'bytes/snapshot':>15} {'of raw':>7} {'encode MB/s':>12} {'decode MB/s':>12}")
    for name, r in results.items():
        print(
            f"{name:62} {r['bytes_per_snapshot']:15,.0f} {r['of_raw']:7.3f} "
            f"{r['encode_mb_s'] if name != 'raw' else float('inf'):12.0f} {r['decode_mb_s'] if name != 'raw' else float('inf'):12.0f}"
        )
    checksum = checksum_cost(series, results[CONVEXP]["encode_all_seconds"], count)
    print(
        f"\nchecksums (CRC-32 of each kernel, what the writer adds per row): {checksum['seconds']:.3f} s for all, "
        f"{checksum['per_snapshot_us']:.1f} us a snapshot, {checksum['share_of_encode']:.1%} of convexp's encoding time"
    )
    return {"snapshots": count, "raw_bytes": raw_total, "encodings": results, "checksum": checksum}


if __name__ == "__main__":
    main()
