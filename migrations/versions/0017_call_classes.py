"""attempts.error_class and attempts.answerer: the provider's error code and answered-by value
classified by its adapter, which the retry policy, the circuit breaker and the voicemail outcome
decide on (the provider's own values stay beside them, as users see them)

Revision ID: 0017_call_classes
Revises: 0016_follow_ups
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_call_classes"
down_revision: str | None = "0016_follow_ups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The classes of the values stored so far, as their adapters (Twilio, ElevenLabs) classify them.
_ERROR_CLASSES = {
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
_ANSWERERS = {
    "human": "human",
    "machine_start": "machine",
    "voicemail_detection": "machine",
    "machine_end_beep": "machine_greeting_over",
    "machine_end_silence": "machine_greeting_over",
    "machine_end_other": "machine_greeting_over",
    "fax": "fax",
}


def upgrade() -> None:
    op.add_column("attempts", sa.Column("error_class", sa.String(length=32), nullable=True))
    op.add_column("attempts", sa.Column("answerer", sa.String(length=24), nullable=True))
    attempts = sa.table(
        "attempts",
        sa.column("error_code", sa.String),
        sa.column("error_class", sa.String),
        sa.column("answered_by", sa.String),
        sa.column("answerer", sa.String),
    )
    for code, error_class in _ERROR_CLASSES.items():
        op.execute(
            attempts.update().where(attempts.c.error_code == code).values(error_class=error_class)
        )
    for answered_by, answerer in _ANSWERERS.items():
        op.execute(
            attempts.update().where(attempts.c.answered_by == answered_by).values(answerer=answerer)
        )
    # Any other value was taken for a person before; "unknown" says the provider could not tell.
    op.execute(
        attempts.update()
        .where(attempts.c.answered_by.is_not(None), attempts.c.answerer.is_(None))
        .values(answerer="unknown")
    )


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("answerer")
        batch.drop_column("error_class")
