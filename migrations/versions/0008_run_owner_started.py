"""runs.owner_started_at: when the process that owns a running run started

With pid and host it names the owner exactly: on its host a run is running while that very process
lives, and a later process given the same pid is told apart. Older rows keep NULL and are judged by
their heartbeat, as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 11:40:00
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_started_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("owner_started_at")
