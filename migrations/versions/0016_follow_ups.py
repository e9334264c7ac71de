"""follow-ups a conversation asks for: each request and the campaign's settings for them, and
contact dispositions long enough for the follow-up ones

Revision ID: 0016_follow_ups
Revises: 0015_short_retries
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_follow_ups"
down_revision: str | None = "0015_short_retries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "follow_up_settings",
        sa.Column(
            "campaign_id",
            sa.String(length=32),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("max_callbacks", sa.Integer(), nullable=True),
        sa.Column("max_redirects", sa.Integer(), nullable=True),
        sa.Column("callback_item", sa.String(length=200), nullable=True),
        sa.Column("redirect_item", sa.String(length=200), nullable=True),
        sa.Column("stop_item", sa.String(length=200), nullable=True),
        sa.Column("mappings", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
    )
    op.create_table(
        "follow_up_requests",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.String(length=32),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "contact_id",
            sa.String(length=32),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "attempt_id",
            sa.String(length=32),
            sa.ForeignKey("attempts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("asked", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("call_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("phone_number", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("attempt_id", "kind", name="uq_follow_up_requests_attempt_kind"),
    )
    op.create_index("ix_follow_up_requests_campaign", "follow_up_requests", ["campaign_id", "kind"])
    op.create_index("ix_follow_up_requests_contact", "follow_up_requests", ["contact_id"])
    with op.batch_alter_table("contacts") as batch:
        batch.alter_column(
            "disposition",
            existing_type=sa.String(length=16),
            type_=sa.String(length=32),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.alter_column(
            "disposition",
            existing_type=sa.String(length=32),
            type_=sa.String(length=16),
            existing_nullable=True,
        )
    op.drop_index("ix_follow_up_requests_contact", table_name="follow_up_requests")
    op.drop_index("ix_follow_up_requests_campaign", table_name="follow_up_requests")
    op.drop_table("follow_up_requests")
    op.drop_table("follow_up_settings")
