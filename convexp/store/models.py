"""The tables of the results database, as SQLAlchemy 2.0 typed models.

These models and the Alembic migrations in ``migrations/versions`` describe the same
schema; a test fails if they drift apart. ORM objects stay inside :mod:`convexp.store`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("queued", "running", "finished", "failed", "interrupted", "diverged", "pruned")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Sweep(Base):
    """A search over an experiment's fields (its ``sweep:`` block): each of its trials is a run."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, doc="The sweep's number in this database.")
    uid: Mapped[str] = mapped_column(
        String(32), unique=True, doc="The sweep's identity across databases (`convexp db copy` keeps its trials together)."
    )
    experiment: Mapped[str] = mapped_column(String(200), doc="The experiment's name in the YAML.")
    method: Mapped[str] = mapped_column(String(20), doc="grid, random or tpe.")
    definition: Mapped[dict] = mapped_column(
        JSON,
        doc="The sweep block as run: method, trials, seed, parameters (dotted path -> distribution), objective, prune.",
    )
    digest: Mapped[str] = mapped_column(
        String(64),
        index=True,
        doc="SHA-256 of the experiment's fields and the sweep block less its trials: `convexp run --resume-sweep` continues the latest sweep with the same.",
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, doc="When it started (UTC).")


class Run(Base):
    """One training run: one experiment on one backend with one resolved spec."""

    __tablename__ = "runs"
    __table_args__ = (
        # a trial number is taken once per sweep, even by two processes continuing it at once
        Index("ix_runs_sweep_id_trial", "sweep_id", "trial", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, doc="The run's number in this database (`convexp show ID`).")
    experiment: Mapped[str] = mapped_column(
        String(200), doc="The experiment's name in the YAML (or the name given to `convexp.track`)."
    )
    backend: Mapped[str] = mapped_column(
        String(100),
        doc="The backend plugin that trained it (`numpy`, `torch`, `tensorflow`, ...; `external` for a run recorded from your own loop).",
    )
    status: Mapped[str] = mapped_column(
        String(20), doc="queued, running, finished, failed, interrupted, diverged, or pruned (a sweep stopped it early)."
    )
    seed: Mapped[int] = mapped_column(Integer, doc="The seed of initial weights, batch order and dropout.")
    dataset: Mapped[str] = mapped_column(
        String(100), doc="The dataset's name (`digits`, `mnist`, ...; the file for your own arrays)."
    )
    kernel_initializer: Mapped[str] = mapped_column(
        String(100), doc="The initializer of conv and dense kernels, as resolved (`default` named as the framework's own)."
    )
    bias_initializer: Mapped[str] = mapped_column(String(100), doc="The initializer of the biases.")
    spec: Mapped[dict] = mapped_column(
        JSON, doc="The run's whole resolved experiment, as JSON: layers, optimizer, epochs, snapshots and the rest."
    )
    convexp_version: Mapped[str] = mapped_column(String(50), doc="The convexp version that recorded it.")
    backend_version: Mapped[str] = mapped_column(String(50), doc="The backend plugin's version.")
    framework: Mapped[str] = mapped_column(String(100), doc="The framework the backend trains with (numpy, torch, tensorflow).")
    framework_version: Mapped[str] = mapped_column(String(50), doc="That framework's version.")
    epochs_completed: Mapped[int] = mapped_column(
        Integer, default=0, doc="Whole epochs done, committed with their metrics and checkpoint."
    )
    steps_completed: Mapped[int] = mapped_column(Integer, default=0, doc="Optimizer steps done and recorded.")
    started_at: Mapped[datetime] = mapped_column(DateTime, doc="When the run started (UTC).")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, doc="When it ended (UTC); NULL while it runs.")
    message: Mapped[str | None] = mapped_column(
        Text, nullable=True, doc="Why it ended as it did (an error, a divergence, Ctrl-C); NULL when it finished."
    )
    heartbeat_at: Mapped[datetime | None] = mapped_column(
        DateTime,
        nullable=True,
        doc="Liveness of a running run: written with every batch the recorder flushes (at least every few seconds); a run still running whose process is gone or silent is shown as stale.",
    )
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="The process recording the run.")
    host: Mapped[str | None] = mapped_column(String(255), nullable=True, doc="The machine that process runs on.")
    attempts: Mapped[int] = mapped_column(
        Integer, server_default="1", doc="How many times the run was started: 1, plus one for each resume or retry."
    )
    uid: Mapped[str | None] = mapped_column(
        String(32),
        nullable=True,
        index=True,
        unique=True,
        doc="The run's identity across databases (ids differ between them): `convexp db copy` skips a run whose uid the destination already holds.",
    )
    data_source: Mapped[dict | None] = mapped_column(
        JSON,
        nullable=True,
        doc='The data the run trained on: {"dir": the folder its files came from, or null for a bundled dataset, "fingerprint": a digest of the arrays}. `convexp run --resume` finds the data there and checks it.',
    )
    device: Mapped[str | None] = mapped_column(
        String(20),
        nullable=True,
        doc="The device the run trained on (cpu, cuda): its spec's `device` as the backend resolved it.",
    )
    owner_started_at: Mapped[datetime | None] = mapped_column(
        DateTime,
        nullable=True,
        doc="When the owner process (`pid` on `host`) started: on that host a run is running while this very process lives, and a later process given the same pid is told apart.",
    )
    name: Mapped[str | None] = mapped_column(
        String(200), nullable=True, doc="What the user calls the run (YAML, the tracking API or `convexp name`)."
    )
    tags: Mapped[list | None] = mapped_column(
        JSON, nullable=True, doc="Its tags, a JSON list of strings (YAML, the tracking API or `convexp tag`)."
    )
    notes: Mapped[str | None] = mapped_column(
        Text, nullable=True, doc="Free-text notes (YAML, the tracking API or `convexp note`)."
    )
    sweep_id: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="The id of the sweep it is a trial of (`sweeps.id`); NULL for any other run."
    )
    trial: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="Its trial number in that sweep (1, 2, ...): its sampled values are in its spec."
    )
    recording: Mapped[dict | None] = mapped_column(
        JSON,
        nullable=True,
        doc="Recorded under a budget (a share of training time): which steps' kernels were kept, why, and the measured "
        "costs (see convexp.store.budget); NULL when every scheduled step was recorded.",
    )


class Metric(Base):
    """One value of one metric at one step (per-epoch metrics sit at the epoch's last step)."""

    __tablename__ = "metrics"
    __table_args__ = (
        # also the index for reading a run's metric by name: (run_id, name) is its prefix
        UniqueConstraint("run_id", "name", "step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, doc="The row's number.")
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), doc="The run it belongs to.")
    step: Mapped[int] = mapped_column(
        Integer, doc="The optimizer step it was measured at (an epoch's metrics: that epoch's last step)."
    )
    epoch: Mapped[int] = mapped_column(Integer, doc="The epoch of that step (the first is 1).")
    name: Mapped[str] = mapped_column(
        String(64),
        doc="The metric: train_loss, train_accuracy, test_loss, test_accuracy, epoch_seconds, or any name a tracked loop logs.",
    )
    value: Mapped[float] = mapped_column(Float, doc="Its value (finite).")
    wall_time: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="When the training loop handed the value over: Unix time in seconds (UTC); NULL in older rows."
    )


class KernelSnapshotRow(Base):
    """One conv layer's kernel and bias at one step.

    Each column's ``doc`` says what it holds; :mod:`convexp.store.encoding` encodes and decodes ``kernel``
    (:func:`~convexp.store.encoding.snapshot_checksum` computes ``checksum``).
    """

    __tablename__ = "kernel_snapshots"
    __table_args__ = (
        # also the index for reading a layer's snapshots in step order
        UniqueConstraint("run_id", "layer", "step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, doc="The row's number.")
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), doc="The run it belongs to.")
    layer: Mapped[str] = mapped_column(
        String(64), doc="The layer's name (`conv1`, a torch module's path, a Keras layer's name; batch_norm layers' rows too)."
    )
    step: Mapped[int] = mapped_column(Integer, doc="The optimizer step after which the kernel was read (0: the initial weights).")
    epoch: Mapped[int] = mapped_column(Integer, doc="The epoch of that step (0 for step 0).")
    shape: Mapped[str] = mapped_column(
        String(100),
        doc="The kernel's shape as a JSON list: (out_channels, in_channels / groups, kh, kw); (4, C) for a batch_norm layer.",
    )
    kernel: Mapped[bytes] = mapped_column(
        LargeBinary,
        doc="The kernel: little-endian float32 bytes when `encoding` is raw, else an XOR delta against the row at `base_step`.",
    )
    bias: Mapped[bytes | None] = mapped_column(
        LargeBinary, nullable=True, doc="out_channels float32 values, always raw; NULL for a layer without bias."
    )
    encoding: Mapped[str] = mapped_column(
        String(24), server_default="raw", doc="raw, xor-zstd or (rows of before) xor-delta (see the database guide for decoding)."
    )
    base_step: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="The step whose kernel an XOR-delta row is XOR-ed onto; NULL for a raw row."
    )
    checksum: Mapped[int | None] = mapped_column(
        BigInteger,
        nullable=True,
        doc="CRC-32 of the decoded float32 kernel and bias, checked by every reader; NULL in rows recorded before checksums (`convexp db check --fix` adds it).",
    )


class RunCheckpoint(Base):
    """A run's latest epoch-end checkpoint: the backend's whole training state, to resume from.

    One row per run, replaced at each epoch end in the same transaction as that epoch's
    metrics and snapshots, so it never runs ahead of (or behind) what is recorded.
    """

    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True, doc="The run it belongs to (one checkpoint per run)."
    )
    epoch: Mapped[int] = mapped_column(Integer, doc="The epoch it was taken after.")
    step: Mapped[int] = mapped_column(Integer, doc="The step it was taken after.")
    state: Mapped[bytes] = mapped_column(
        LargeBinary, doc="The backend's whole training state (weights, optimizer state, random generators), to resume from."
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, doc="When it was taken (UTC).")
