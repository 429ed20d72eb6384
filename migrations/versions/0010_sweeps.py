"""sweeps, runs.sweep_id, runs.trial: searches over an experiment's fields, each trial a run

A sweep (an experiment's ``sweep:`` block: grid, random or TPE search) keeps its definition and a digest of it,
by which ``convexp run --resume-sweep`` finds it again; each of its trials is an ordinary run that points at it
and carries its trial number, taken once per sweep. Runs of before keep NULL in both.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: Union[str, None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("experiment", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
        sa.UniqueConstraint("uid", name=op.f("uq_sweeps_uid")),
    )
    op.create_index(op.f("ix_sweeps_digest"), "sweeps", ["digest"], unique=False)
    # Added in place, never by copying the table (which a foreign key would need on SQLite): a batch copy drops
    # ``runs``, and with foreign keys on that deletes every run's metrics and snapshots (ON DELETE CASCADE).
    op.add_column("runs", sa.Column("sweep_id", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("trial", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_runs_sweep_id_trial"), "runs", ["sweep_id", "trial"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_sweep_id_trial"), table_name="runs")
    op.drop_column("runs", "trial")  # in place (SQLite 3.35+), for the same reason
    op.drop_column("runs", "sweep_id")
    op.drop_index(op.f("ix_sweeps_digest"), table_name="sweeps")
    op.drop_table("sweeps")
