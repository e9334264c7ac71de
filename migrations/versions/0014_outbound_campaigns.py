"""outbound campaigns: their policy and idempotency key, the workspace configuration, and
contacts that end once their last number keeps failing

Revision ID: 0014_outbound_campaigns
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_outbound_campaigns"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbound_campaigns",
        sa.Column(
            "campaign_id",
            sa.String(length=32),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True, unique=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("variant", sa.String(length=16), nullable=False),
        sa.Column("phone_number_id", sa.String(length=200), nullable=False),
        sa.Column("mode_config", sa.JSON(), nullable=True),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "outbound_config",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(
            sa.Column(
                "end_after_number_failures", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("end_after_number_failures")
    op.drop_table("outbound_config")
    op.drop_table("outbound_campaigns")
