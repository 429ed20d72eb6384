"""Keep every core of this machine busy, as a newcomer's machine with other work beside it is.

    python scripts/busy.py [--seconds N] [--per-core K]

Starts K spinning processes per usable core (default 1) and keeps them spinning until Ctrl-C, SIGTERM or
``--seconds`` (default: until stopped). Run the test suite beside it to prove that no test depends on
having the machine to itself:

    python scripts/busy.py & busy=$!; python -m pytest; kill $busy
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time


def spin(until: float) -> None:
    """Use one core's worth of CPU until ``until`` (a time.monotonic() value; infinity for ever)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    x = 0
    while time.monotonic() < until:
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after this long (default: when stopped)")
    parser.add_argument("--per-core", type=int, default=1, help="spinning processes per usable core (default 1)")
    args = parser.parse_args()
    if args.seconds <= 0 or args.per_core < 1:
        parser.error("--seconds must be positive and --per-core at least 1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    until = time.monotonic() + args.seconds
    workers = [multiprocessing.Process(target=spin, args=(until,), daemon=True) for _ in range(cores * args.per_core)]
    for worker in workers:
        worker.start()
    print(f"busy.py: {len(workers)} spinning process(es) on {cores} core(s) (pid {os.getpid()})", file=sys.stderr, flush=True)

    def stop(*_: object) -> None:
        for worker in workers:
            worker.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
