"""initial schema: runs, metrics, kernel_snapshots

Revision ID: 0001
Revises:
Create Date: 2026-11-27 13:43:59.047797
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment", sa.String(length=200), nullable=False),
        sa.Column("backend", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("kernel_initializer", sa.String(length=100), nullable=False),
        sa.Column("bias_initializer", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("convexp_version", sa.String(length=50), nullable=False),
        sa.Column("backend_version", sa.String(length=50), nullable=False),
        sa.Column("framework", sa.String(length=100), nullable=False),
        sa.Column("framework_version", sa.String(length=50), nullable=False),
        sa.Column("epochs_completed", sa.Integer(), nullable=False),
        sa.Column("steps_completed", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_table(
        "kernel_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("layer", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("shape", sa.String(length=100), nullable=False),
        sa.Column("kernel", sa.LargeBinary(), nullable=False),
        sa.Column("bias", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_kernel_snapshots_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kernel_snapshots")),
        sa.UniqueConstraint("run_id", "layer", "step", name=op.f("uq_kernel_snapshots_run_id_layer_step")),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_metrics_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.UniqueConstraint("run_id", "name", "step", name=op.f("uq_metrics_run_id_name_step")),
    )


def downgrade() -> None:
    op.drop_table("metrics")
    op.drop_table("kernel_snapshots")
    op.drop_table("runs")
