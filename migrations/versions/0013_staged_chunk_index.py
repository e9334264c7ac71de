"""staged rows are published and discarded in seq ranges read through an index

Revision ID: 0013_staged_chunk_index
Revises: 0012_staged_imports
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_staged_chunk_index"
down_revision: str | None = "0012_staged_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_staged_contacts_chunk", "staged_contacts", ["import_id", "seq"])
    op.create_index("ix_staged_dnc_entries_chunk", "staged_dnc_entries", ["import_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_staged_dnc_entries_chunk", table_name="staged_dnc_entries")
    op.drop_index("ix_staged_contacts_chunk", table_name="staged_contacts")
