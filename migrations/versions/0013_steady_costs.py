"""indexes that keep housekeeping, counts and retention off the whole history

Revision ID: 0013_steady_costs
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_steady_costs"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
# webhook_deliveries is made by 0004_api, an independent branch on 0001: run after it.
depends_on: str | Sequence[str] | None = "0004_api"


def upgrade() -> None:
    op.create_index("ix_call_events_received_at", "call_events", ["received_at"])
    op.create_index("ix_webhook_deliveries_created_at", "webhook_deliveries", ["created_at"])
    op.create_index("ix_contacts_counts", "contacts", ["campaign_id", "state", "disposition"])
    op.create_index("ix_attempts_status_ended", "attempts", ["status", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_attempts_status_ended", table_name="attempts")
    op.drop_index("ix_contacts_counts", table_name="contacts")
    op.drop_index("ix_webhook_deliveries_created_at", table_name="webhook_deliveries")
    op.drop_index("ix_call_events_received_at", table_name="call_events")
