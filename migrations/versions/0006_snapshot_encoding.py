"""kernel_snapshots.encoding and base_step: snapshots stored as XOR deltas of the layer's previous one

Every existing row keeps its float32 bytes and is marked 'raw', so old databases read as before;
`convexp db pack` re-encodes their runs to take less space.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 17:30:00
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("kernel_snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("encoding", sa.String(length=24), server_default="raw", nullable=False))
        batch_op.add_column(sa.Column("base_step", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Deltas cannot be read without their encoding: decode them before dropping the columns.
    connection = op.get_bind()
    from convexp.store.encoding import decode_chain

    keys = connection.execute(sa.text("SELECT DISTINCT run_id, layer FROM kernel_snapshots WHERE encoding != 'raw'")).all()
    for run_id, layer in keys:
        rows = connection.execute(
            sa.text(
                "SELECT step, encoding, base_step, kernel FROM kernel_snapshots "
                "WHERE run_id = :run AND layer = :layer ORDER BY step"
            ),
            {"run": run_id, "layer": layer},
        ).all()
        for step, kernel in decode_chain(rows):
            connection.execute(
                sa.text("UPDATE kernel_snapshots SET kernel = :kernel WHERE run_id = :run AND layer = :layer AND step = :step"),
                {"kernel": kernel, "run": run_id, "layer": layer, "step": step},
            )
    with op.batch_alter_table("kernel_snapshots", schema=None) as batch_op:
        batch_op.drop_column("base_step")
        batch_op.drop_column("encoding")
