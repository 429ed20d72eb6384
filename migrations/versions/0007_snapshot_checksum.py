"""kernel_snapshots.checksum: the CRC-32 of the float32 kernel and bias each row stands for

Rows recorded before it keep a NULL checksum and read as before; `convexp db check --fix` (or
`convexp db pack`) adds checksums to them where they decode.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:40:00
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("kernel_snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checksum", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kernel_snapshots", schema=None) as batch_op:
        batch_op.drop_column("checksum")
