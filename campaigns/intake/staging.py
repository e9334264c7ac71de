"""Large imports on SQLite: staged, then published, in short transactions.

SQLite lets one writer at a time hold the whole database. A file stored in one transaction held
every other request, and the dispatcher, for as long as it took (35 s behind a 20 MB file). On
SQLite an import therefore commits batch by batch into a staging table that nothing else reads
(``staged_contacts``, ``staged_dnc_entries``), and other work gets the database between batches.

All or nothing still holds. While a run is ``staging`` none of its rows is visible; a file refused
or failing half-way is discarded, by the import itself or, if its process died, by housekeeping
once the run's heartbeat is stale. Once the whole file has been read and checked the run is
``publishing``: decided. Its rows are moved to their table a few hundred at a time, and a run whose
process died while publishing is finished by housekeeping, never undone (its first contacts may
already have been called).

PostgreSQL imports in one transaction: its writers do not wait for one another, and COPY is
faster than staging twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import TextClause, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.base import UTCDateTime
from campaigns.clock import utcnow
from campaigns.events import ContactsDue, emit
from campaigns.ids import new_id
from campaigns.models import (
    ContactState,
    ImportRun,
    StagedContact,
    StagedDncEntry,
)

CONTACTS = "contacts"
DNC = "dnc"
STAGING = "staging"
PUBLISHING = "publishing"
# Rows moved per transaction: each holds the only connection for a few tens of milliseconds
# (other requests waited up to 1.5 s behind chunks of 2,000 on a busy machine).
PUBLISH_ROWS = 500
DISCARD_ROWS = 10_000
# A run whose process is alive touches its heartbeat at every batch (a few per second).
STALE_AFTER = timedelta(minutes=2)

_STAGED = {CONTACTS: StagedContact, DNC: StagedDncEntry}

# A run's chunk is read through the (import_id, seq) index: through the (import_id, phone_number)
# one SQLite walked all of the run's rows for every chunk, and a file of millions of rows held the
# database for minutes while it was published.
_CHUNK = "import_id = :run AND seq > :low AND seq <= :high"

# Contacts of a file share the empty dedupe scope and start pending (see intake.store).
PUBLISH_CONTACTS = text(
    "INSERT INTO contacts (id, campaign_id, external_id, phone_number, dedupe_scope,"
    " alternate_numbers, number_index, failures_on_number, time_zones, dynamic_variables,"
    " row_number, state, attempts_made, next_attempt_at, call_at, created_at)"
    " SELECT id, :campaign_id, external_id, phone_number, '', alternate_numbers, 0, 0,"
    " time_zones, dynamic_variables, row_number, :pending, 0, next_attempt_at, call_at, :now"
    f" FROM staged_contacts WHERE {_CHUNK} ORDER BY seq"
    " ON CONFLICT (campaign_id, phone_number, dedupe_scope) DO NOTHING"
    " RETURNING phone_number"
).bindparams(bindparam("now", type_=UTCDateTime()))

# NULLs never collide in a unique constraint: the global list (campaign_id NULL) is checked by hand.
PUBLISH_DNC = text(
    "INSERT INTO dnc_entries (phone_number, campaign_id, reason, created_at)"
    " SELECT phone_number, :campaign_id, reason, :now FROM staged_dnc_entries AS staged"
    f" WHERE {_CHUNK} AND NOT EXISTS ("
    "   SELECT 1 FROM dnc_entries AS listed WHERE listed.phone_number = staged.phone_number"
    "   AND listed.campaign_id IS :campaign_id)"
    " ORDER BY seq ON CONFLICT DO NOTHING RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()))


@dataclass
class Published:
    added: int = 0
    # Contacts whose number another request added to the campaign after they were staged:
    # (row, the phone cell as written), reported as duplicates.
    raced: list[tuple[int, str]] = field(default_factory=list)


async def open_run(session: AsyncSession, kind: str, campaign_id: str | None) -> str:
    """Register a run (in the caller's transaction, which should commit at once)."""
    run_id = new_id("imp")
    now = utcnow()
    session.add(
        ImportRun(
            id=run_id,
            kind=kind,
            campaign_id=campaign_id,
            state=STAGING,
            heartbeat_at=now,
            created_at=now,
        )
    )
    await session.flush()
    return run_id


async def touch(session: AsyncSession, run_id: str) -> None:
    """The run's process is alive: called in each batch's transaction."""
    await session.execute(
        update(ImportRun).where(ImportRun.id == run_id).values(heartbeat_at=utcnow())
    )


@asynccontextmanager
async def deciding(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: str
) -> AsyncIterator[None]:
    """Around the staging of a whole file: the run is decided when the block ends, discarded if it
    fails (a refused file, an error, a cancelled request), so that none of its rows is published."""
    try:
        yield
        await decide(sessionmaker, run_id)
    except BaseException:
        # The failure is the one to report; a discard that fails too is left to housekeeping.
        with suppress(Exception):
            await discard(sessionmaker, run_id)
        raise


@asynccontextmanager
async def staging_batch(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: str
) -> AsyncIterator[AsyncSession]:
    """One batch's own transaction, which also tells housekeeping the run's process is alive."""
    async with sessionmaker.begin() as session:
        await touch(session, run_id)
        yield session


async def decide(sessionmaker: async_sessionmaker[AsyncSession], run_id: str) -> None:
    """The whole file was read and checked: from now on the run is published, whatever happens."""
    async with sessionmaker.begin() as session:
        await session.execute(
            update(ImportRun)
            .where(ImportRun.id == run_id)
            .values(state=PUBLISHING, heartbeat_at=utcnow())
        )


async def publish(sessionmaker: async_sessionmaker[AsyncSession], run_id: str) -> Published:
    """Move a decided run's rows to their table, a chunk per transaction, then forget the run."""
    async with sessionmaker() as session:
        run = await session.get(ImportRun, run_id)
    if run is None:
        return Published()
    kind, campaign_id = run.kind, run.campaign_id
    published = Published()
    async for low, high in _chunks(sessionmaker, run_id, _STAGED[kind], PUBLISH_ROWS):
        async with sessionmaker.begin() as session:
            await touch(session, run_id)
            params = {"run": run_id, "campaign_id": campaign_id, "low": low, "high": high}
            if kind == CONTACTS:
                await _publish_contacts(session, params, published)
            else:
                result = await session.execute(PUBLISH_DNC, {**params, "now": utcnow()})
                published.added += len(result.all())
                await session.execute(delete_chunk(_STAGED[kind]), params)
    async with sessionmaker.begin() as session:
        await session.execute(delete(ImportRun).where(ImportRun.id == run_id))
        if kind == CONTACTS and campaign_id is not None and published.added:
            emit(session, ContactsDue(campaign_id))
    return published


async def _chunks(
    sessionmaker: async_sessionmaker[AsyncSession],
    run_id: str,
    staged: type[StagedContact] | type[StagedDncEntry],
    size: int,
) -> AsyncIterator[tuple[int, int]]:
    """The run's seq ranges (low, high], ``size`` wide, first to last."""
    async with sessionmaker() as session:
        first, last = (
            await session.execute(
                select(func.min(staged.seq), func.max(staged.seq)).where(staged.import_id == run_id)
            )
        ).one()
    if first is None:
        return
    for low in range(first - 1, last, size):
        yield low, low + size


async def _publish_contacts(
    session: AsyncSession, params: dict[str, object], published: Published
) -> None:
    added = set(
        (
            await session.execute(
                PUBLISH_CONTACTS, {**params, "pending": ContactState.PENDING, "now": utcnow()}
            )
        ).scalars()
    )
    published.added += len(added)
    moved = await session.execute(
        text(f"{delete_chunk(StagedContact)} RETURNING phone_number, row_number, raw"), params
    )
    published.raced += [(row, raw) for number, row, raw in moved if number not in added]


def delete_chunk(staged: type[StagedContact] | type[StagedDncEntry]) -> TextClause:
    return text(f"DELETE FROM {staged.__tablename__} WHERE {_CHUNK}")


async def discard(sessionmaker: async_sessionmaker[AsyncSession], run_id: str) -> None:
    """Forget a run that was not decided: its staged rows, then the run."""
    async with sessionmaker() as session:
        run = await session.get(ImportRun, run_id)
    if run is None:
        return
    staged = _STAGED[run.kind]
    async for low, high in _chunks(sessionmaker, run_id, staged, DISCARD_ROWS):
        async with sessionmaker.begin() as session:
            await session.execute(delete_chunk(staged), {"run": run_id, "low": low, "high": high})
    async with sessionmaker.begin() as session:
        await session.execute(delete(ImportRun).where(ImportRun.id == run_id))


async def settle_abandoned(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime | None = None
) -> int:
    """Housekeeping: finish or discard the runs whose process died; how many were settled."""
    stale = (now or utcnow()) - STALE_AFTER
    async with sessionmaker() as session:
        runs = (
            await session.execute(
                select(ImportRun.id, ImportRun.state).where(ImportRun.heartbeat_at < stale)
            )
        ).all()
    settled = 0
    for run_id, state in runs:
        # Take the run over: a process that is alive after all would have touched it meanwhile.
        async with sessionmaker.begin() as session:
            taken = await session.execute(
                update(ImportRun)
                .where(ImportRun.id == run_id, ImportRun.heartbeat_at < stale)
                .values(heartbeat_at=utcnow())
            )
        if not taken.rowcount:  # type: ignore[attr-defined]
            continue
        if state == PUBLISHING:
            await publish(sessionmaker, run_id)
        else:
            await discard(sessionmaker, run_id)
        settled += 1
    return settled
