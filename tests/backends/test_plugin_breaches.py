"""The runner checks everything a backend hands back, because plugins are other people's code.

Each misbehaviour comes from a backend installed the way a third party installs one: a
distribution on the path with a ``convexp.backends`` entry point (a ``.dist-info`` folder beside
its module), run through the ``convexp`` command in a fresh process. A breach ends the run
``failed`` (non-finite kernels: ``diverged``) with one line naming the plugin, the layer and what
was wrong; nothing of the breach is stored; convexp exits non-zero.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli, wait_until, write_experiments

BACKEND = '''
import os
import sys

import numpy as np

from convexp.backends.protocol import Backend
from convexp.backends.hookspecs import hookimpl
from convexp.model.weights import KernelSnapshot

KIND = os.environ.get("MISBEHAVE", "")
AT = int(os.environ.get("MISBEHAVE_AT", "5"))


class Misbehaving(Backend):
    """Trains by shrinking its kernels each step, and misbehaves as MISBEHAVE says."""

    name = "misbehaving"
    framework = "numpy"

    def framework_version(self):
        if KIND == "version-raises":
            raise RuntimeError("cannot read my own version")
        return np.__version__

    def initialize(self, initializer, shape, seed):
        return np.zeros(shape, np.float32)

    def conv2d(self, images, kernel, bias=None, *, stride=1, padding="valid"):
        raise NotImplementedError

    def train(self, job, observer):
        from convexp.model.seeding import initial_weights

        weights = initial_weights(job.layers, job.kernel_initializer, job.bias_initializer, job.seed)
        conv = {k: v for k, v in weights.items() if k in job.snapshot_layers}
        state = {"step": 0}

        def kernels():
            step = state["step"]
            out = dict(conv)
            if KIND == "drops-layer" and step >= AT:
                del out["conv2"]
            if KIND == "extra-layer" and step >= AT:
                out["conv9"] = out["conv1"]
            if KIND == "wrong-shape" and step >= AT:
                out["conv1"] = KernelSnapshot(out["conv1"].kernel.transpose(0, 1, 3, 2).reshape(4, 1, 1, 9), out["conv1"].bias)
            if KIND == "infinite" and step >= AT:
                out["conv2"] = KernelSnapshot(np.full_like(out["conv2"].kernel, np.inf), out["conv2"].bias)
            if KIND == "nan-bias" and step >= AT:
                out["conv1"] = KernelSnapshot(out["conv1"].kernel, np.full_like(out["conv1"].bias, np.nan))
            if KIND == "float64-inexact" and step >= AT:
                out["conv1"] = KernelSnapshot(out["conv1"].kernel.astype(np.float64) + 1e-12, out["conv1"].bias)
            if KIND == "float16":
                half = out["conv1"].kernel.astype(np.float16)
                out["conv1"] = KernelSnapshot(half, out["conv1"].bias)
            if KIND == "integer" and step >= AT:
                out["conv1"] = KernelSnapshot(out["conv1"].kernel.astype(np.int32), out["conv1"].bias)
            return out

        observer.on_train_start(kernels)
        for epoch in range(1, job.epochs + 1):
            for _ in range(job.steps_per_epoch):
                if state["step"] >= job.total_steps:
                    break
                state["step"] += 1
                step = state["step"]
                if KIND == "stops-early" and step > 10:
                    return
                if KIND == "sys-exit" and step == 5:
                    sys.exit(0)
                if KIND == "ctrl-c" and step == 5:
                    raise KeyboardInterrupt
                if KIND == "held" and step == 3:  # a long evaluation, held by the test until it releases it
                    import time
                    from pathlib import Path

                    hold = Path(os.environ["MISBEHAVE_HOLD"])
                    (hold / "held").touch()
                    deadline = time.monotonic() + 600  # never forever, should the test die
                    while not (hold / "release").exists() and time.monotonic() < deadline:
                        time.sleep(0.05)
                if KIND == "raises" and step == 5:
                    raise RuntimeError("the plugin's own bug")
                conv = {k: KernelSnapshot(v.kernel * np.float32(0.9), v.bias) for k, v in conv.items()}
                reported = step + 1 if KIND == "skips-a-step" and step >= 5 else step
                reported_epoch = epoch + 1 if KIND == "wrong-epoch" and step == 5 else epoch
                observer.on_step(reported, reported_epoch, {"train_loss": 1.0 / step, "train_accuracy": 0.5}, kernels)
                if KIND == "skips-a-step" and step >= 5:
                    state["step"] += 1
            observer.on_epoch_end(epoch, state["step"], {"test_loss": 0.1, "test_accuracy": 0.7, "epoch_seconds": 0.01}, kernels)


class Plugin:
    @hookimpl
    def register_backends(self, register):
        register(Misbehaving())


plugin = Plugin()
'''

SPEC = {
    "dataset": "digits",
    "backend": "misbehaving",
    "layers": [
        {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "conv", "filters": 6, "kernel_size": 3, "activation": "relu"},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ],
    "epochs": 2,
    "batch_size": 128,
    "max_steps": 20,
    "initializer": "glorot_uniform",
    "snapshots": {"every": 1},
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder holding the 'misbehaving' backend as an installed distribution: its module and a
    .dist-info folder whose entry_points.txt registers it in the convexp.backends group."""
    site = tmp_path_factory.mktemp("site")
    (site / "misbehaving_backend.py").write_text(BACKEND)
    info = site / "misbehaving_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: misbehaving-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[convexp.backends]\nmisbehaving = misbehaving_backend:plugin\n")
    return site


def run_misbehaving(installed: Path, tmp_path: Path, kind: str, *extra: str):
    experiments = write_experiments(tmp_path / "e.yaml", {"probe": SPEC})
    db = tmp_path / "r.db"
    path = os.pathsep.join(p for p in (str(installed), os.environ.get("PYTHONPATH", "")) if p)
    result = run_cli("run", str(experiments), "--db", str(db), *extra, env={"PYTHONPATH": path, "MISBEHAVE": kind})
    return result, db


def stored(db: Path) -> tuple[list[tuple], dict[str, list[int]]]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        runs = connection.execute("SELECT status, message, steps_completed FROM runs").fetchall()
        layers: dict[str, list[int]] = {}
        for layer, step in connection.execute("SELECT layer, step FROM kernel_snapshots ORDER BY layer, step"):
            layers.setdefault(layer, []).append(step)
    return runs, layers


def one_line(result) -> str:
    """The output of a run that ended badly: no traceback; the run's result line says why."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result.stdout + result.stderr


def test_a_well_behaved_run_of_the_same_plugin_finishes(installed, tmp_path):
    result, db = run_misbehaving(installed, tmp_path, "")
    assert result.returncode == 0, result.stderr
    runs, layers = stored(db)
    assert runs == [("finished", None, 20)]
    assert layers == {"conv1": list(range(21)), "conv2": list(range(21))}


@pytest.mark.parametrize(
    ("kind", "status", "message", "last_step"),
    [
        ("stops-early", "failed", "backend 'misbehaving' returned after 10 of the run's 20 steps", 10),
        ("drops-layer", "failed", "backend 'misbehaving' handed back no kernel of conv2 at step 5", 4),
        ("extra-layer", "failed", "backend 'misbehaving' handed back layer 'conv9' at step 5, which the plan does not record", 4),
        (
            "wrong-shape",
            "failed",
            "backend 'misbehaving' handed back conv1's kernel at step 5 with shape [4, 1, 1, 9]; the plan's is [4, 1, 3, 3]",
            4,
        ),
        ("infinite", "diverged", "conv2's kernel holds infinity at step 5 (epoch 1)", 4),
        ("nan-bias", "diverged", "conv1's bias holds NaN at step 5 (epoch 1)", 4),
        ("float64-inexact", "failed", "conv1's kernel at step 5 as float64 with values float32 cannot hold exactly", 4),
        ("integer", "failed", "handed back conv1's kernel at step 5 of dtype int32, not float32", 4),
        ("sys-exit", "failed", "backend 'misbehaving' called sys.exit(0) during training", 4),
        ("raises", "failed", "backend 'misbehaving' raised RuntimeError: the plugin's own bug", 4),
        ("skips-a-step", "failed", "backend 'misbehaving' reported step 6 after step 4", 4),
        ("wrong-epoch", "failed", "backend 'misbehaving' reported step 5 in epoch 2; with 12 steps an epoch it is in epoch 1", 4),
    ],
)
def test_a_breach_ends_the_run_with_one_line_and_stores_none_of_it(installed, tmp_path, kind, status, message, last_step):
    result, db = run_misbehaving(installed, tmp_path, kind)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert message in one_line(result), result.stderr
    (run,), layers = stored(db)
    assert run[0] == status and message in run[1], run
    # what was recorded before the breach is whole: every layer at every step up to the last good one
    for layer, steps in layers.items():
        assert steps == list(range(len(steps))) and steps[-1] <= last_step, (layer, steps)


def test_a_float16_kernel_is_converted_exactly_and_the_run_finishes(installed, tmp_path):
    result, db = run_misbehaving(installed, tmp_path, "float16")
    assert result.returncode == 0, result.stderr
    runs, _ = stored(db)
    assert runs[0][0] == "finished"


def test_ctrl_c_in_a_plugin_leaves_the_run_interrupted(installed, tmp_path):
    result, db = run_misbehaving(installed, tmp_path, "ctrl-c")
    assert result.returncode == 130, result.stderr
    assert stored(db)[0][0][0] == "interrupted"


def test_a_plugin_whose_framework_version_raises_is_one_line_naming_it(installed, tmp_path):
    result, db = run_misbehaving(installed, tmp_path, "version-raises")
    assert result.returncode == 1
    assert "backend 'misbehaving': framework_version() raised RuntimeError: cannot read my own version" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
    assert not db.exists() or stored(db)[0] == []
    listed = run_cli(
        "plugins",
        "--format",
        "json",
        env={"PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")]), "MISBEHAVE": "version-raises"},
    )
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    (entry,) = [b for b in json.loads(listed.stdout) if b["name"] == "misbehaving"]
    assert "cannot read my own version" in json.dumps(entry)


def test_the_conformance_kit_meets_a_breach_first(installed, tmp_path):
    """A plugin author running `convexp check` sees the same line the runner would give."""
    env = {
        "PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")]),
        "MISBEHAVE": "wrong-shape",
        "MISBEHAVE_AT": "2",
    }
    result = run_cli("check", "misbehaving", env=env)
    assert result.returncode == 1
    assert "handed back conv1's kernel at step 2 with shape [4, 1, 1, 9]" in result.stdout + result.stderr


def test_a_live_run_is_never_taken_over_unless_forced(installed, tmp_path):
    """A backend quiet for as long as the test holds it keeps its run alive (heartbeats come from the
    writer thread); on this host a run whose process is alive is running however old its heartbeat;
    --resume refuses it, --resume --force takes it over and says so; the first process, released, then
    records nothing more, exits non-zero with one line, and leaves the final status to the process that
    took over. The test waits on states (the backend says it is held; the heartbeat moves), never on a
    clock: the run cannot finish before the test lets it go."""
    import subprocess
    import sys

    experiments = write_experiments(tmp_path / "e.yaml", {"probe": SPEC})
    db = tmp_path / "r.db"
    hold = tmp_path / "hold"
    hold.mkdir()
    path = os.pathsep.join(p for p in (str(installed), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}
    first = subprocess.Popen(
        [sys.executable, "-m", "convexp", "run", str(experiments), "--db", str(db)],
        env={**env, "MISBEHAVE": "held", "MISBEHAVE_HOLD": str(hold)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def heartbeat():
            with contextlib.closing(sqlite3.connect(db)) as connection:
                return connection.execute("SELECT steps_completed, heartbeat_at FROM runs WHERE id = 1").fetchone()

        wait_until(lambda: (hold / "held").exists() or first.poll() is not None, "the backend to reach step 3")
        assert first.poll() is None, first.communicate()
        wait_until(lambda: heartbeat()[1] is not None, "a first heartbeat")
        before = heartbeat()[1]
        wait_until(lambda: heartbeat()[1] > before, "a heartbeat while the backend is quiet")
        shown = json.loads(run_cli("runs", "--db", str(db), "--format", "json").stdout)
        assert shown[0]["status"] == "running", shown
        refused = run_cli("run", "--resume", "1", "--db", str(db), env={"PYTHONPATH": path})
        assert refused.returncode == 1 and "run 1 is still running" in refused.stderr and "--resume --force" in refused.stderr
        taken = run_cli("run", "--resume", "1", "--force", "--db", str(db), env={"PYTHONPATH": path})
        assert taken.returncode == 0, taken.stderr
        assert f"--force: taking over run 1 from pid {first.pid}" in taken.stderr
        (hold / "release").touch()
        out, err = first.communicate(timeout=600)
    finally:
        (hold / "release").touch()
        if first.poll() is None:
            first.kill()
    assert first.returncode == 1, (out, err)
    assert "Traceback" not in err + out and "no longer this process's" in out + err, (out, err)
    runs, layers = stored(db)
    assert runs[0][0] == "finished" and runs[0][2] == 20, runs
    assert layers == {"conv1": list(range(21)), "conv2": list(range(21))}


def test_resume_force_without_resume_is_refused(tmp_path):
    result = run_cli("run", "--force", "--db", str(tmp_path / "r.db"))
    assert result.returncode == 1 and "--force takes over a run to resume: give it with --resume RUN" in result.stderr


def test_on_this_host_a_run_whose_process_is_alive_is_running_however_old_its_heartbeat():
    """The owner decides on its own host; a process that started after the last heartbeat only reuses
    the pid of one that died; another host's run goes by its heartbeat's age."""
    import socket
    from dataclasses import replace
    from datetime import timedelta

    from convexp.store import RunRecord
    from convexp.store.records import process_started_at
    from tests.store.test_store import RUN_FIELDS

    started = process_started_at(os.getpid())
    if started is None:
        pytest.skip("process start times are read from /proc (Linux)")
    beat = started + timedelta(seconds=2)
    run = RunRecord(
        id=1, **{k: v for k, v in RUN_FIELDS.items() if k in RunRecord.__dataclass_fields__},
        status="running", epochs_completed=0, steps_completed=0, started_at=beat, finished_at=None, message=None,
        heartbeat_at=beat, pid=os.getpid(), host=socket.gethostname(), attempts=1, uid=None, data_source=None,
        device="cpu", owner_started_at=None, name=None, tags=None, notes=None, test_accuracy=None,
    )  # fmt: skip
    an_hour_later = beat + timedelta(hours=1)
    assert not run.is_stale(an_hour_later)  # alive: quiet for an hour, still running
    assert run.shown_status(an_hour_later) == "running"
    reused = replace(run, heartbeat_at=started - timedelta(minutes=5))  # the pid's first owner beat before this process began
    assert reused.is_stale(an_hour_later)
    elsewhere = replace(run, host="another-host")
    assert not elsewhere.is_stale(beat + timedelta(seconds=29)) and elsewhere.is_stale(beat + timedelta(seconds=31))
    dead = replace(run, pid=2**22 + 12345)
    assert dead.is_stale(beat)
    # with the owner's start time recorded (as convexp records it), the pid alone is not enough
    owned = replace(run, owner_started_at=started, heartbeat_at=started - timedelta(minutes=5))
    assert not owned.is_stale(an_hour_later)
    assert replace(run, owner_started_at=started - timedelta(hours=2)).is_stale(an_hour_later)  # another process, same pid
