"""agent connection per campaign; conversation results on attempts

Revision ID: 0003_agents
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_agents"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "agent_connection", sa.String(length=16), server_default="stream", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("agent_phone_number_id", sa.String(length=200), nullable=True)
        )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transcript", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("call_successful", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("data_collection", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("conversation_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("conversation_seconds")
        batch_op.drop_column("data_collection")
        batch_op.drop_column("call_successful")
        batch_op.drop_column("transcript")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("agent_phone_number_id")
        batch_op.drop_column("agent_connection")
