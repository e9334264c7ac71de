"""attempts.error_class: the provider's error code classified by its adapter, which the retry
policy and the circuit breaker decide on

Revision ID: 0017_error_class
Revises: 0016_follow_ups
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_error_class"
down_revision: str | None = "0016_follow_ups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The classes of the codes stored so far (all from the Twilio adapter), as it classifies them.
_CLASSES = {
    "21211": "invalid_number",
    "21214": "invalid_number",
    "21216": "invalid_number",
    "21217": "invalid_number",
    "21202": "invalid_number",
    "21215": "destination_refused",
    "13227": "destination_not_enabled",
    "20003": "credentials_refused",
    "21210": "caller_id_not_owned",
    "21212": "caller_id_invalid",
    "21219": "trial_account",
}


def upgrade() -> None:
    op.add_column("attempts", sa.Column("error_class", sa.String(length=32), nullable=True))
    attempts = sa.table(
        "attempts", sa.column("error_code", sa.String), sa.column("error_class", sa.String)
    )
    for code, error_class in _CLASSES.items():
        op.execute(
            attempts.update().where(attempts.c.error_code == code).values(error_class=error_class)
        )


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("error_class")
