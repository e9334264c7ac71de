"""attempts keep the live conversation: its transcript, the tools called and the agent's error

Revision ID: 0012_live_conversation
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_live_conversation"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("live_transcript", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tool_calls", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("agent_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("agent_error")
        batch.drop_column("tool_calls")
        batch.drop_column("live_transcript")
