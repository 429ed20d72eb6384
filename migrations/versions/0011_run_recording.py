"""runs.recording: what a run recorded under a budget kept, and why

A run recorded with a budget (``convexp run --budget``, ``record(..., budget=0.05)``) leaves some steps' kernels
out; this column keeps the budget, the steps always kept (step 0, the first steps, epoch ends, the last step), the
cadence chosen and the measured costs. Runs of before, and runs without a budget, keep NULL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 13:00:00
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: Union[str, None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # in place, never by copying the table: see 0010 (a copy of ``runs`` would cascade-delete its rows)
    op.add_column("runs", sa.Column("recording", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "recording")
