"""ix_contacts_counts also holds attempts_made: a campaign's dials are summed from the index its
counts are read from, instead of counting its attempts (a count that grows with every call)

Revision ID: 0018_counts_dials
Revises: 0013_steady_costs
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018_counts_dials"
down_revision: str | None = "0013_steady_costs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_contacts_counts", table_name="contacts")
    op.create_index(
        "ix_contacts_counts", "contacts", ["campaign_id", "state", "disposition", "attempts_made"]
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_counts", table_name="contacts")
    op.create_index("ix_contacts_counts", "contacts", ["campaign_id", "state", "disposition"])
