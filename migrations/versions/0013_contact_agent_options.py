"""contacts keep what a request asked of their call: agent overrides, user id, call options

Revision ID: 0013_contact_agent_options
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_contact_agent_options"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("agent_override", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("user_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("call_options", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("call_options")
        batch.drop_column("user_id")
        batch.drop_column("agent_override")
