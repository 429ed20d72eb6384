"""The digits-grid experiment (8 runs) locally into SQLite vs on a 2-worker Dask LocalCluster into
PostgreSQL: wall time of each, and the row counts, which must be the same.

    eval "$(bash scripts/start-postgres.sh)"      # or any PostgreSQL URL whose role may create databases
    python benchmarks/grid.py "$CONVEXP_TEST_POSTGRES" [--workers 2]

Prints a table and the ratio local / dask.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
COUNTS = (
    "SELECT count(*) FROM runs WHERE status = 'finished'",
    "SELECT count(*) FROM kernel_snapshots",
    "SELECT count(*) FROM metrics WHERE name != 'epoch_seconds'",
)


def timed_run(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "convexp", "run", str(REPO / "experiments.yaml"), "-e", "digits-grid", *args],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def counts(url: str) -> tuple[int, ...]:
    engine = create_engine(url)
    with engine.connect() as connection:
        values = tuple(connection.execute(text(sql)).scalar_one() for sql in COUNTS)
    engine.dispose()
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("postgres", help="PostgreSQL URL of a role that may create databases")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = "convexp_grid_benchmark"
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    postgres = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory() as folder:
        sqlite = f"sqlite:///{folder}/grid.db"
        local = timed_run("--db", sqlite)
        dask = timed_run("--executor", "dask", "--workers", str(args.workers), "--db", postgres)
        rows = [
            ("local", "SQLite", local, counts(sqlite)),
            (f"dask, {args.workers} workers", "PostgreSQL", dask, counts(postgres)),
        ]
    print(f"{'executor':<18} {'database':<11} {'wall s':>7} {'finished':>8} {'snapshots':>9} {'metrics':>8}")
    for executor, database, seconds, (finished, snapshots, metrics) in rows:
        print(f"{executor:<18} {database:<11} {seconds:>7.1f} {finished:>8} {snapshots:>9} {metrics:>8}")
    print(f"local / dask wall time: {local / dask:.2f}; row counts equal: {rows[0][3] == rows[1][3]}")


if __name__ == "__main__":
    main()
