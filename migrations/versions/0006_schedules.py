"""recurring campaigns: cron schedules, named contact lists, recorded firings

Revision ID: 0006_schedules
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_schedules"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("schedule_cron", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("schedule_list", sa.String(length=100), nullable=True))
    op.create_table(
        "contact_list_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("phone_number", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("time_zones", sa.JSON(), nullable=False),
        sa.Column("dynamic_variables", sa.JSON(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("list_name", "phone_number", name="uq_contact_list_entries_number"),
    )
    op.create_index(
        "ix_contact_list_entries_list_name", "contact_list_entries", ["list_name"], unique=False
    )
    op.create_table(
        "schedule_firings",
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "fire_at"),
    )


def downgrade() -> None:
    op.drop_table("schedule_firings")
    op.drop_index("ix_contact_list_entries_list_name", table_name="contact_list_entries")
    op.drop_table("contact_list_entries")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("schedule_list")
        batch.drop_column("schedule_cron")
