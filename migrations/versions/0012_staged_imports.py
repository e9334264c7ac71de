"""large imports on SQLite are staged and published in short transactions

Revision ID: 0012_staged_imports
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_staged_imports"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "import_runs",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "campaign_id",
            sa.String(length=32),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "staged_contacts",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "import_id",
            sa.String(length=32),
            sa.ForeignKey("import_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("phone_number", sa.String(length=32), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("alternate_numbers", sa.JSON(), nullable=False),
        sa.Column("time_zones", sa.JSON(), nullable=False),
        sa.Column("dynamic_variables", sa.JSON(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("import_id", "phone_number", name="uq_staged_contacts"),
    )
    op.create_table(
        "staged_dnc_entries",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "import_id",
            sa.String(length=32),
            sa.ForeignKey("import_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("phone_number", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.UniqueConstraint("import_id", "phone_number", name="uq_staged_dnc_entries"),
    )


def downgrade() -> None:
    op.drop_table("staged_dnc_entries")
    op.drop_table("staged_contacts")
    op.drop_table("import_runs")
