"""campaign policy: calling windows, rule sets, retry rules, voicemail policy; reminders

Revision ID: 0002_policy
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_policy"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("end_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC")
        )
        batch.add_column(sa.Column("calling_periods", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rule_set", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("retry_rules", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("max_attempts_per_day", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "voicemail_policy", sa.String(length=16), nullable=False, server_default="hang_up"
            )
        )
        batch.add_column(sa.Column("voicemail_message", sa.Text(), nullable=True))
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(
            sa.Column("dedupe_scope", sa.String(length=32), nullable=False, server_default="")
        )
        batch.drop_constraint("uq_contacts_campaign_phone", type_="unique")
        batch.create_unique_constraint(
            "uq_contacts_campaign_phone_scope", ["campaign_id", "phone_number", "dedupe_scope"]
        )
        batch.add_column(sa.Column("call_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.create_unique_constraint("uq_contacts_idempotency_key", ["idempotency_key"])
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("voicemail_action", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("voicemail_action")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_constraint("uq_contacts_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")
        batch.drop_column("call_at")
        batch.drop_constraint("uq_contacts_campaign_phone_scope", type_="unique")
        batch.create_unique_constraint(
            "uq_contacts_campaign_phone", ["campaign_id", "phone_number"]
        )
        batch.drop_column("dedupe_scope")
    with op.batch_alter_table("campaigns") as batch:
        for column in (
            "voicemail_message",
            "voicemail_policy",
            "max_attempts_per_day",
            "retry_rules",
            "rule_set",
            "calling_periods",
            "timezone",
            "end_at",
        ):
            batch.drop_column(column)
