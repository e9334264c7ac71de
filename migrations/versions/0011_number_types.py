"""campaigns choose the number types they call (personal, shared-cost, ... numbers)

Revision ID: 0011_number_types
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_number_types"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        # NULL: the default types, so campaigns made before keep calling what they called.
        batch.add_column(sa.Column("allowed_number_types", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("allowed_number_types")
