"""Alembic environment: migrations always run on a connection handed in by bridge.migrate."""

from typing import Any

from alembic import context

from campaigns.tables import UTCDateTime, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `callbridge db upgrade`")


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    # Revisions stay plain SQLAlchemy: the UTC handling lives in the model, not in the schema.
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    # Only our own tables: the sandbox carrier keeps its call log beside them.
    return type_ != "table" or name in metadata.tables


context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    render_item=render_item,
    include_name=include_name,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
