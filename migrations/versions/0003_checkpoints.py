"""checkpoints: each run's latest epoch-end training state, for --resume; runs.attempts and runs.uid

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 16:45:00
"""

import uuid
from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_checkpoints_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_checkpoints")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("uid", sa.String(length=32), nullable=True))
    # every existing run gets its own identity, kept when runs are copied between databases
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("uid", sa.String))
    connection = op.get_bind()
    for (run_id,) in connection.execute(sa.select(runs.c.id)).all():
        connection.execute(runs.update().where(runs.c.id == run_id).values(uid=uuid.uuid4().hex))
    # A unique index, not a constraint: on SQLite a new constraint means copying the table, and
    # dropping the old copy would cascade-delete every run's metrics and snapshots.
    op.create_index(op.f("ix_runs_uid"), "runs", ["uid"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_uid"), table_name="runs")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("uid")
        batch_op.drop_column("attempts")
    op.drop_table("checkpoints")
