"""The per-contact export, streamed in keyset pages so memory stays flat on any campaign size."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.models import Attempt, AttemptStatus, Contact, Direction

PAGE = 1000
FIXED_COLUMNS = [
    "phone_number",
    "id",
    "disposition",
    "attempts",
    "last_status",
    "answered_by",
    # Which way the last call went (inbound: the contact called back), and how many calls back.
    "last_direction",
    "calls_back",
]
# Spreadsheets evaluate cells starting with these as formulas.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """Prefix a quote so a spreadsheet shows the text instead of running it."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


async def _variable_names(session: AsyncSession, campaign_id: str) -> list[str]:
    names: dict[str, None] = {}
    after = ""
    while True:
        rows = (
            await session.execute(
                select(Contact.id, Contact.dynamic_variables)
                .where(Contact.campaign_id == campaign_id, Contact.id > after)
                .order_by(Contact.id)
                .limit(PAGE)
            )
        ).all()
        if not rows:
            return list(names)
        for _, variables in rows:
            names.update(dict.fromkeys(variables or {}))
        after = rows[-1][0]


async def _last_attempts(
    session: AsyncSession, contact_ids: list[str]
) -> tuple[dict[str, Attempt], Counter[str]]:
    """Each contact's last attempt, and how many times each contact called back."""
    attempts = await session.scalars(
        select(Attempt)
        .where(
            Attempt.contact_id.in_(contact_ids),
            Attempt.status != AttemptStatus.NOT_PLACED,
        )
        .order_by(Attempt.number, Attempt.created_at)
    )
    last: dict[str, Attempt] = {}
    calls_back: Counter[str] = Counter()
    for attempt in attempts:
        last[attempt.contact_id] = attempt
        if attempt.direction == Direction.INBOUND:
            calls_back[attempt.contact_id] += 1
    return last, calls_back


def _render(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


async def stream_export(
    sm: async_sessionmaker[AsyncSession], campaign_id: str
) -> AsyncIterator[str]:
    async with sm() as session:
        names = await _variable_names(session, campaign_id)
        # The E.164 number is kept as is (a leading "+" stays dialable); every other cell,
        # dynamic variables above all, is neutralised.
        yield _render([FIXED_COLUMNS + [neutralise(n) for n in names]])
        after = ""
        while True:
            contacts = list(
                await session.scalars(
                    select(Contact)
                    .where(Contact.campaign_id == campaign_id, Contact.id > after)
                    .order_by(Contact.id)
                    .limit(PAGE)
                )
            )
            if not contacts:
                return
            last, calls_back = await _last_attempts(session, [c.id for c in contacts])
            rows = []
            for contact in contacts:
                attempt = last.get(contact.id)
                variables = contact.dynamic_variables or {}
                rows.append(
                    [contact.phone_number]
                    + [
                        neutralise(str(v))
                        for v in (
                            contact.external_id or "",
                            contact.disposition or "",
                            contact.attempts_made,
                            attempt.status if attempt else "",
                            (attempt.answered_by or "") if attempt else "",
                            attempt.direction if attempt else "",
                            calls_back[contact.id],
                        )
                    ]
                    + [neutralise(str(variables.get(n, ""))) for n in names]
                )
            yield _render(rows)
            after = contacts[-1].id


async def export_response(
    request: web.Request, sm: async_sessionmaker[AsyncSession], campaign_id: str
) -> web.StreamResponse:
    """The export of one campaign, streamed to the client as a CSV download."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{campaign_id}.csv"',
        }
    )
    await response.prepare(request)
    async for chunk in stream_export(sm, campaign_id):
        await response.write(chunk.encode("utf-8"))
    await response.write_eof()
    return response
