"""API key scopes; the request an idempotency key was first used with

Revision ID: 0008_key_scopes
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_key_scopes"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
# api_keys is made by 0004_api, an independent branch on 0001: run after it.
depends_on: str | Sequence[str] | None = "0004_api"


def upgrade() -> None:
    # Keys made before scopes existed become write keys: they keep working with campaigns and
    # calls, and managing keys or webhooks takes an admin key made on purpose.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("scope", sa.String(length=16), server_default="write", nullable=False)
        )
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("idempotency_request_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("idempotency_request_hash")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scope")
