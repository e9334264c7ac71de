"""Contacts given as a list (a JSON request, a batch call's recipients) rather than a CSV file.

The same rules as the CSV intake: numbers read with the campaign's region, checked, stored as E.164;
repeats rejected as ``duplicate``. Item numbers in the report are 1-based positions in the list.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.clock import utcnow
from campaigns.intake.report import ImportReport, RowError
from campaigns.intake.rows import ParsedBatch, ParsedContact, reject
from campaigns.intake.store import insert_new, prepare_campaign
from campaigns.models import Contact
from campaigns.phones import DEFAULT_NUMBER_TYPES, PhoneRejected, normalize


@dataclass(frozen=True)
class ContactItem:
    phone_number: str
    external_id: str | None = None
    dynamic_variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentOptions:
    """What a request asks of one contact's call beyond its variables (see Contact)."""

    agent_override: dict[str, Any] | None = None
    user_id: str | None = None
    call_options: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.agent_override or self.user_id or self.call_options)


async def set_agent_options(
    session: AsyncSession, campaign_id: str, by_number: dict[str, AgentOptions]
) -> None:
    """Give the campaign's contacts (by E.164 number) their options, in one statement."""
    rows = [
        {
            "b_number": number,
            "agent_override": options.agent_override,
            "user_id": options.user_id,
            "call_options": options.call_options,
        }
        for number, options in by_number.items()
        if options
    ]
    if not rows:
        return
    table = Contact.__table__
    statement = (
        update(table)
        .where(table.c.campaign_id == campaign_id, table.c.phone_number == bindparam("b_number"))
        .values(
            agent_override=bindparam("agent_override"),
            user_id=bindparam("user_id"),
            call_options=bindparam("call_options"),
        )
    )
    await session.execute(statement, rows)


def parse_items(
    items: Sequence[ContactItem],
    default_region: str,
    number_types: Collection[str] = DEFAULT_NUMBER_TYPES,
) -> ParsedBatch:
    contacts: list[ParsedContact] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for row, item in enumerate(items, start=1):
        if has_nul(item):
            errors.append(RowError(row, item.phone_number.replace(_NUL, "")[:100], "nul_byte"))
            continue
        try:
            phone = normalize(item.phone_number, default_region, number_types)
        except PhoneRejected as exc:
            errors.append(RowError(row, item.phone_number[:100], exc.reason, exc.number_type))
            continue
        if phone.e164 in seen:
            errors.append(RowError(row, item.phone_number[:100], "duplicate"))
            continue
        seen.add(phone.e164)
        contacts.append(
            ParsedContact(
                row=row,
                raw=item.phone_number,
                e164=phone.e164,
                time_zones=phone.time_zones,
                external_id=item.external_id,
                dynamic_variables=dict(item.dynamic_variables),
            )
        )
    return ParsedBatch(len(items), contacts, errors)


_NUL = "\x00"


def has_nul(item: ContactItem) -> bool:
    """Whether any value of the item holds a NUL, which PostgreSQL cannot store (as in a CSV)."""
    texts = [item.phone_number, item.external_id or ""]
    for name, value in item.dynamic_variables.items():
        texts.append(str(name))
        if isinstance(value, str):
            texts.append(value)
    return _NUL in "".join(texts)


def report_of(batch: ParsedBatch) -> ImportReport:
    report = ImportReport()
    report.add(batch)
    return report


async def add_contacts(
    sm: async_sessionmaker[AsyncSession],
    campaign_id: str,
    items: Sequence[ContactItem],
    *,
    default_region: str,
    next_attempt_at: datetime | None = None,
    number_types: Collection[str] = DEFAULT_NUMBER_TYPES,
) -> ImportReport:
    """Add the valid items in one transaction; numbers the campaign already has are duplicates."""
    parsed = parse_items(items, default_region, number_types)
    report = ImportReport()
    async with sm.begin() as session:
        await add_parsed(session, campaign_id, parsed, next_attempt_at or utcnow(), report)
    return report


async def add_parsed(
    session: AsyncSession,
    campaign_id: str,
    parsed: ParsedBatch,
    due: datetime,
    report: ImportReport,
) -> None:
    dialect = await prepare_campaign(session, campaign_id)
    inserted = await insert_new(session, dialect, campaign_id, parsed.contacts, due)
    already_there = {contact.e164 for contact in parsed.contacts} - inserted
    report.add(reject(parsed, already_there, "duplicate"))
