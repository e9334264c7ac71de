"""Paging of listings: page and per_page with the X-Total-Count headers (the callbridge API), or a
cursor with has_more (the ElevenLabs-compatible API)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.api.errors import ApiError

T = TypeVar("T")


async def page_of(
    session: AsyncSession,
    entity: Any,
    where: list[ColumnElement[bool]],
    order_by: tuple[Any, ...],
    render: Callable[[Any], dict[str, Any]],
    page: int,
    per_page: int,
) -> web.Response:
    """One page of ``entity`` rows matching ``where``, with the pagination headers."""
    total = await session.scalar(select(func.count()).select_from(entity).where(*where))
    rows = await session.scalars(
        select(entity)
        .where(*where)
        .order_by(*order_by)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return paged([render(row) for row in rows], total or 0, page, per_page)


def paged(body: list[Any], total: int, page: int, per_page: int) -> web.Response:
    response = web.json_response(body)
    response.headers.update(
        {"X-Total-Count": str(total), "X-Page": str(page), "X-Per-Page": str(per_page)}
    )
    return response


def cursor_page(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """The first ``limit`` of ``rows`` (read with ``limit + 1``), and whether more follow."""
    return list(rows[:limit]), len(rows) > limit


def older_than(created: Any, row_id: Any, after: Any) -> ColumnElement[bool]:
    """Rows after ``after`` in newest-first order (created_at, then id, both descending)."""
    return or_(created < after.created_at, and_(created == after.created_at, row_id < after.id))


async def after_cursor(session: AsyncSession, entity: Any, cursor: str, what: str) -> Any:
    """The condition for the rows of ``entity`` after the cursor row, newest first; a cursor that
    names no row is a bad query."""
    after = await session.get(entity, cursor)
    if after is None:
        raise ApiError(400, "bad_query", f"cursor names no {what}")
    return older_than(entity.created_at, entity.id, after)
