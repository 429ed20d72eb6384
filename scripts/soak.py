"""Soak test: random SIGKILLs across concurrent writers (and migrations) must never lose,
duplicate or corrupt a row.

Not part of the test suite (it takes minutes). Run it from the repository root::

    python scripts/soak.py --kills 100 --writers 4

Each round starts WRITERS `convexp run` processes against one SQLite file: new runs, or
`--resume` of runs an earlier kill left stale. Every few rounds the file is a fresh or an
old-schema (revision 0001) database, so kills also land during migrations. One or two
writers are SIGKILLed at a random moment. After every round the database must pass
`PRAGMA integrity_check` and every run must hold whole steps: snapshots of steps
0..steps_completed and train_loss at steps 1..steps_completed, each exactly once. At the end
every stopped run is resumed to the end, and each must then have exactly the rows of an
uninterrupted run and bit-identical final kernels (numpy runs are deterministic for a seed), and
`convexp db check` must find every snapshot matching its checksum.
Prints a table of the counts; exits 1 if any failure count is not 0.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

EPOCHS, BATCH, TRAIN = 12, 64, 1437
STEPS = EPOCHS * -(-TRAIN // BATCH)
SEEDS = (0, 1, 2, 3)
SPEC = {
    "dataset": "digits",
    "backend": "numpy",
    "epochs": EPOCHS,
    "batch_size": BATCH,
    "layers": [
        {"type": "conv", "filters": 8, "kernel_size": 3, "activation": "relu"},
        # 32 x 8 x 3 x 3 float32 = 9.2 KB: stored as XOR deltas, so kills also land amid chains of them
        {"type": "conv", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "maxpool", "pool_size": 2},
        {"type": "dropout", "rate": 0.2},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ],
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "snapshots": {"every": 1},
}
LAYERS = ("conv1", "conv2")
#: Exits that are not failures: finished, killed by us, or refused to resume a run another writer holds.
REFUSALS = ("is still running", "nothing to resume")


def list_runs(db: Path, counts: dict[str, int]) -> list[dict]:
    """`convexp runs` as JSON; a failure of the command itself counts as an unexpected error."""
    result = subprocess.run(
        [sys.executable, "-m", "convexp", "runs", "--db", str(db), "--format", "json"], capture_output=True, text=True
    )
    if result.returncode != 0:
        counts["unexpected errors"] += 1
        print(f"convexp runs failed: {result.stderr.strip()}", file=sys.stderr)
        return []
    return json.loads(result.stdout)


def convexp(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "convexp", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def old_database(path: Path) -> None:
    """A database at schema revision 0001, as an old convexp left it."""
    from alembic import command

    from convexp.store.database import _alembic_config, create_db_engine

    engine = create_db_engine(f"sqlite:///{path}", for_writing=True)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")
    engine.dispose()


def check(db: Path, counts: dict[str, int], final: bool = False, reference: dict | None = None) -> None:
    """Count integrity failures, gaps, lost and duplicated rows in ``db``."""
    if not db.exists():
        return
    connection = sqlite3.connect(db, timeout=60)
    try:
        if connection.execute("PRAGMA integrity_check").fetchone() != ("ok",):
            counts["integrity failures"] += 1
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "alembic_version" in tables and connection.execute("SELECT count(*) FROM alembic_version").fetchone()[0] > 1:
            counts["integrity failures"] += 1
        if "runs" not in tables or "heartbeat_at" not in {c[1] for c in connection.execute("PRAGMA table_info(runs)")}:
            return
        for run_id, steps, status, seed in connection.execute("SELECT id, steps_completed, status, seed FROM runs"):
            layers = {
                layer: [
                    s
                    for (s,) in connection.execute(
                        "SELECT step FROM kernel_snapshots WHERE run_id = ? AND layer = ? ORDER BY step", (run_id, layer)
                    )
                ]
                for layer in LAYERS
            }
            snaps = layers["conv1"]
            losses = [
                s
                for (s,) in connection.execute(
                    "SELECT step FROM metrics WHERE run_id = ? AND name = 'train_loss' ORDER BY step", (run_id,)
                )
            ]
            counts["duplicated rows"] += sum(len(s) - len(set(s)) for s in layers.values()) + (len(losses) - len(set(losses)))
            expected_snaps = list(range(steps + 1)) if snaps or steps else []
            gaps = any(sorted(set(s)) != expected_snaps for s in layers.values())
            if gaps or sorted(set(losses)) != list(range(1, steps + 1)):
                counts["runs with gaps"] += 1
            if final:
                if status != "finished" or steps != STEPS:
                    counts["runs not finished at the end"] += 1
                    continue
                if any(len(s) != STEPS + 1 for s in layers.values()) or len(losses) != STEPS:
                    counts["lost rows"] += 1
                kernels = final_kernels(connection, run_id)
                if reference is not None and kernels != reference[seed]:
                    counts["final kernels differing from an uninterrupted run"] += 1
    finally:
        connection.close()


def db_check(db: Path, counts: dict[str, int]) -> None:
    """Every snapshot must decode and match its checksum (`convexp db check`); every row must have one."""
    result = subprocess.run(
        [sys.executable, "-m", "convexp", "db", "check", "--db", str(db), "--format", "json"], capture_output=True, text=True
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        counts["unexpected errors"] += 1
        print(f"convexp db check failed: {result.stderr.strip()}", file=sys.stderr)
        return
    bad = sum(len(r["damaged"]) + r["unverified"] for r in report["runs"]) + len(report["integrity"] or [])
    counts["snapshots failing `convexp db check` (damaged or without a checksum)"] += bad


def final_kernels(connection: sqlite3.Connection, run_id: int) -> list[bytes]:
    """The float32 bytes of a run's kernels at step STEPS, layer by layer, decoded from their chains of XOR deltas."""
    from convexp.store.encoding import decode_chain

    kernels = []
    for layer in LAYERS:
        rows = connection.execute(
            "SELECT step, encoding, base_step, kernel FROM kernel_snapshots WHERE run_id = ?1 AND layer = ?2 AND step <= ?3"
            " AND step >= (SELECT max(step) FROM kernel_snapshots"
            " WHERE run_id = ?1 AND layer = ?2 AND step <= ?3 AND encoding = 'raw') ORDER BY step",
            (run_id, layer, STEPS),
        ).fetchall()
        kernels.append(dict(decode_chain(rows))[STEPS])
    return kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs to deliver (default 100)")
    parser.add_argument("--writers", type=int, default=4, help="concurrent convexp processes per round (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill schedule")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="convexp-soak-"))
    experiments = work / "experiments.yaml"
    experiments.write_text(yaml.safe_dump({"experiments": {f"soak-{s}": {**SPEC, "seed": s} for s in SEEDS}}))
    counts = {
        "integrity failures": 0,
        "runs with gaps": 0,
        "lost rows": 0,
        "duplicated rows": 0,
        "runs not finished at the end": 0,
        "final kernels differing from an uninterrupted run": 0,
        "snapshots failing `convexp db check` (damaged or without a checksum)": 0,
        "unexpected errors": 0,
    }
    kills = migration_kills = rounds = 0
    databases: list[Path] = []
    started = time.monotonic()
    while kills < args.kills:
        rounds += 1
        if not databases or rounds % 8 == 1:  # a new file: fresh, or at an old revision to be migrated
            db = work / f"soak-{len(databases)}.db"
            if len(databases) % 2:
                old_database(db)
            databases.append(db)
            migrating = True
        else:
            migrating = False
        db = databases[-1]
        stale = []
        if db.exists() and not migrating:
            runs = list_runs(db, counts)
            stale = [r["id"] for r in runs if r["status"] in ("stale", "interrupted", "failed")]
        writers = []
        for _ in range(args.writers):
            if stale and rng.random() < 0.5:
                writers.append(convexp("run", "--resume", str(stale.pop()), "--db", str(db)))
            else:
                writers.append(convexp("run", str(experiments), "-e", f"soak-{rng.choice(SEEDS)}", "--db", str(db)))
        victims = rng.sample(writers, k=rng.choice((1, 2)))
        for victim in victims:
            time.sleep(rng.uniform(0.3, 2.0) if migrating else rng.uniform(0.5, 3.0))
            if victim.poll() is None:
                victim.kill()
                kills += 1
                migration_kills += migrating
        for writer in writers:
            _, err = writer.communicate()
            if writer.returncode not in (0, -9) and not any(r in err for r in REFUSALS):
                counts["unexpected errors"] += 1
                print(f"unexpected exit {writer.returncode}: {err.strip().splitlines()[-1:]}", file=sys.stderr)
        for database in databases:
            check(database, counts)
        print(
            f"round {rounds}: {kills} kills ({migration_kills} on new or old-schema files, during start-up and migration)",
            file=sys.stderr,
        )

    # finish every stopped run, then compare with uninterrupted runs of the same seeds
    reference_db = work / "reference.db"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "convexp",
            "run",
            str(experiments),
            *sum((["-e", f"soak-{s}"] for s in SEEDS), []),
            "--db",
            str(reference_db),
        ],
        capture_output=True,
        check=True,
    )
    with sqlite3.connect(reference_db) as connection:
        runs = connection.execute("SELECT id, seed FROM runs").fetchall()
        reference = {seed: final_kernels(connection, run_id) for run_id, seed in runs}
    resumed = 0
    for db in databases:
        if not db.exists():
            continue
        for run in list_runs(db, counts):
            if run["status"] != "finished":
                result = subprocess.run(
                    [sys.executable, "-m", "convexp", "run", "--resume", str(run["id"]), "--db", str(db)],
                    capture_output=True,
                    text=True,
                )
                resumed += 1
                if result.returncode != 0:
                    counts["unexpected errors"] += 1
                    print(f"resume {run['id']} failed: {result.stderr.strip()}", file=sys.stderr)
        check(db, counts, final=True, reference=reference)
        db_check(db, counts)
    total_runs = sum(sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0] for db in databases if db.exists())
    print(
        f"\n{kills} SIGKILLs ({migration_kills} during start-up/migration) in {rounds} rounds of {args.writers} writers, "
        f"{len(databases)} database files, {total_runs} runs ({resumed} resumed at the end), "
        f"{time.monotonic() - started:.0f} s; files in {work}"
    )
    width = max(map(len, counts))
    for name, value in counts.items():
        print(f"  {name:<{width}}  {value}")
    sys.exit(1 if any(counts.values()) else 0)


if __name__ == "__main__":
    main()
