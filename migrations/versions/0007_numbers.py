"""contacts with several numbers: alternates, the number in use, failures on it

Revision ID: 0007_numbers
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_numbers"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(
            sa.Column("max_failures_per_number", sa.Integer(), nullable=False, server_default="2")
        )
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(
            sa.Column("alternate_numbers", sa.JSON(), nullable=False, server_default="[]")
        )
        batch.add_column(
            sa.Column("number_index", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("failures_on_number", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("failures_on_number")
        batch.drop_column("number_index")
        batch.drop_column("alternate_numbers")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("max_failures_per_number")
