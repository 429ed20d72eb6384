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

RUN_STATUSES = ("queued", "running", "finished", "failed", "interrupted", "diverged")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One training run: one experiment on one backend with one resolved spec."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    seed: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str] = mapped_column(String(100))
    kernel_initializer: Mapped[str] = mapped_column(String(100))
    bias_initializer: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict] = mapped_column(JSON)
    convexp_version: Mapped[str] = mapped_column(String(50))
    backend_version: Mapped[str] = mapped_column(String(50))
    framework: Mapped[str] = mapped_column(String(100))
    framework_version: Mapped[str] = mapped_column(String(50))
    epochs_completed: Mapped[int] = mapped_column(Integer, default=0)
    steps_completed: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Liveness of a running run: written with every batch the recorder flushes (at least every
    # few seconds); a run still 'running' whose process is gone or silent is shown as stale.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: How many times the run was started: 1, plus one for each resume or retry.
    attempts: Mapped[int] = mapped_column(Integer, server_default="1")
    #: The run's identity across databases (ids differ between them): `convexp db copy` skips a run
    #: whose uid the destination already holds.
    uid: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True, unique=True)
    #: The data the run trained on: {"dir": the folder its files came from, or null for a bundled dataset,
    #: "fingerprint": a digest of the arrays}. `convexp run --resume` finds the data there and checks it.
    data_source: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # The device the run trained on (cpu, cuda): its spec's ``device`` as the backend resolved it.
    device: Mapped[str | None] = mapped_column(String(20), nullable=True)
    #: When the owner process (``pid`` on ``host``) started: on that host a run is running while this
    #: very process lives, and a later process that is given the same pid is told apart.
    owner_started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: What the user calls the run, its tags (a JSON list of strings) and notes: set from the YAML, the
    #: tracking API or ``convexp name/tag/note``; shown and filtered by ``convexp runs`` and the UI.
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tags: Mapped[list | None] = mapped_column(JSON, nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)


class Metric(Base):
    """One value of one metric at one step (per-epoch metrics sit at the epoch's last step)."""

    __tablename__ = "metrics"
    __table_args__ = (
        # also the index for reading a run's metric by name: (run_id, name) is its prefix
        UniqueConstraint("run_id", "name", "step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    #: When the training loop handed the value over: Unix time in seconds (UTC); NULL in older rows.
    wall_time: Mapped[float | None] = mapped_column(Float, nullable=True)


class KernelSnapshot(Base):
    """One conv layer's kernel and bias at one step.

    The kernel is in (out_channels, in_channels, kh, kw) order with ``shape`` that list as JSON;
    ``kernel`` holds its little-endian float32 bytes when ``encoding`` is 'raw', or an XOR delta
    against the layer's snapshot at ``base_step`` when it is 'xor-delta' (see
    :mod:`convexp.store.encoding`). ``bias`` holds out_channels float32 values (NULL for a layer
    without bias), always raw. ``checksum`` is the CRC-32 of the float32 kernel and bias the row
    stands for (decoded; see :func:`convexp.store.encoding.snapshot_checksum`), checked by every
    reader; NULL in rows recorded before checksums (``convexp db check --fix`` adds it).
    """

    __tablename__ = "kernel_snapshots"
    __table_args__ = (
        # also the index for reading a layer's snapshots in step order
        UniqueConstraint("run_id", "layer", "step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    shape: Mapped[str] = mapped_column(String(100))
    kernel: Mapped[bytes] = mapped_column(LargeBinary)
    bias: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    encoding: Mapped[str] = mapped_column(String(24), server_default="raw")
    base_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    checksum: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RunCheckpoint(Base):
    """A run's latest epoch-end checkpoint: the backend's whole training state, to resume from.

    One row per run, replaced at each epoch end in the same transaction as that epoch's
    metrics and snapshots, so it never runs ahead of (or behind) what is recorded.
    """

    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime)
