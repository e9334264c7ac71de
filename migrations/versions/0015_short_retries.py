"""short retries per calling window and where a call pushed to a later window lands

Revision ID: 0015_short_retries
Revises: 0014_outbound_campaigns
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_short_retries"
down_revision: str | None = "0014_outbound_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("max_short_retries", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("interval_placement", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("rotate_step_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("rotate_step_seconds")
        batch.drop_column("interval_placement")
        batch.drop_column("max_short_retries")
