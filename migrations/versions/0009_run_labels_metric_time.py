"""runs.name, runs.tags, runs.notes: what a user calls a run; metrics.wall_time: when a value was logged

A run's name, tags and notes are set from the YAML (``name``, ``tags``, ``notes``), the tracking API or
``convexp name/tag/note``, and shown and filtered by ``convexp runs`` and the UI. ``wall_time`` is the
Unix time (seconds, UTC) at which the training loop handed the value over, for charts by wall time;
rows written before it keep NULL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 13:40:00
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: Union[str, None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=True))
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wall_time", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_column("wall_time")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("notes")
        batch_op.drop_column("tags")
        batch_op.drop_column("name")
