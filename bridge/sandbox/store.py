"""The sandbox carrier's call log.

It has its own MetaData, apart from the app's models: the sandbox plays the part of Twilio, and
Twilio's records are not ours. Keeping the log in the database (not in memory) lets a call carry on
across a restart of the service, as a real call does while our webhooks are briefly down.

Status and AMD callbacks go through an outbox (`sandbox_callbacks`): a state change and the
callbacks it fires are committed together, then delivered. A crash between the two re-delivers
on resume, which is what Twilio does too (receivers must be idempotent on CallSid+SequenceNumber).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

from campaigns.clock import as_utc, utcnow

logger = logging.getLogger(__name__)

metadata = MetaData()

TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class Stage:
    """How far the simulation of a call got; the resume point after a restart."""

    CREATED = "created"
    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    TWIML = "twiml"  # the TwiML Url has been fetched
    AMD = "amd"  # the async AMD result has been queued
    ENDED = "ended"


class CreateAbandoned(Exception):
    """A create that waited too long (a busy database) and was given up, storing nothing."""


class CallbackState:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"  # an injected fault: never sent


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back aware UTC datetimes, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite keeps text; one offset-free format keeps comparisons and ORDER BY correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


sandbox_calls = Table(
    "sandbox_calls",
    metadata,
    Column("sid", String(34), primary_key=True),
    Column("account_sid", String(34), nullable=False),
    Column("to_number", String(32), nullable=False),
    Column("from_number", String(64), nullable=False),
    Column("url", Text),
    Column("status_callback", Text),
    Column("status_callback_events", JSON, nullable=False),
    Column("machine_detection", String(32)),
    Column("async_amd", Boolean, nullable=False),
    Column("async_amd_status_callback", Text),
    Column("timeout", Integer, nullable=False),
    Column("time_limit", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("answered_by", String(32)),
    Column("attempt_number", Integer, nullable=False),
    Column("duration", Integer),
    Column("sequence", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("start_time", UTCDateTime),
    Column("answered_at", UTCDateTime),
    Column("end_time", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("params", JSON, nullable=False),
    # Attempt numbers drive the outcome table; two racing creates to one number must not share one.
    UniqueConstraint("to_number", "attempt_number", name="uq_sandbox_calls_to_attempt"),
    Index("ix_sandbox_calls_created_at", "created_at"),
    Index("ix_sandbox_calls_stage", "stage"),
)

sandbox_callbacks = Table(
    "sandbox_callbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_sid", String(34), nullable=False),
    Column("event", String(16), nullable=False),  # initiated ringing answered completed amd
    Column("sequence_number", Integer),  # None for AMD results, which carry no SequenceNumber
    Column("url", Text, nullable=False),
    Column("method", String(8), nullable=False),
    Column("params", JSON, nullable=False),
    Column("idempotency_token", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("response_status", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Index("ix_sandbox_callbacks_call_state", "call_sid", "state"),
)


@dataclass(frozen=True)
class CallSettings:
    """What a call is placed with: who calls whom, where the carrier asks what to do and reports
    to, answering-machine detection, time limits, and the create form as received."""

    to_number: str
    from_number: str
    url: str | None
    status_callback: str | None
    status_callback_events: list[str]
    machine_detection: str | None
    async_amd: bool
    async_amd_status_callback: str | None
    timeout: int
    time_limit: int
    params: dict[str, Any]


@dataclass(frozen=True)
class SandboxCall(CallSettings):
    sid: str
    account_sid: str
    status: str
    stage: str
    answered_by: str | None
    attempt_number: int
    duration: int | None
    sequence: int
    created_at: datetime
    start_time: datetime | None
    answered_at: datetime | None
    end_time: datetime | None
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def param(self, name: str) -> str | None:
        """A single value of the raw create form (the first one if it was repeated)."""
        value = self.params.get(name)
        if isinstance(value, list):
            return value[0] if value else None
        return value


@dataclass(frozen=True)
class Callback:
    id: int
    call_sid: str
    event: str
    sequence_number: int | None
    url: str
    method: str
    params: dict[str, str]
    idempotency_token: str
    state: str
    attempts: int
    response_status: int | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class CallFilter:
    """Twilio's list filters, with time bounds already turned into [lower, upper) instants."""

    to: str | None = None
    from_: str | None = None
    status: str | None = None
    parent_call_sid: str | None = None
    start_from: datetime | None = None
    start_before: datetime | None = None
    end_from: datetime | None = None
    end_before: datetime | None = None


_CALL_FIELDS = tuple(f.name for f in fields(SandboxCall))
_SETTINGS_FIELDS = tuple(f.name for f in fields(CallSettings))
_CALLBACK_FIELDS = tuple(f.name for f in fields(Callback))


def _call(row: Any) -> SandboxCall:
    mapping = row._mapping
    return SandboxCall(**{name: mapping[name] for name in _CALL_FIELDS})


def _callback(row: Any) -> Callback:
    mapping = row._mapping
    return Callback(**{name: mapping[name] for name in _CALLBACK_FIELDS})


def new_call(
    sid: str, account_sid: str, settings: CallSettings, status: str, now: datetime
) -> dict[str, Any]:
    """The row of a call just placed or received, for `CallStore.insert_call`: not yet under
    way, nothing reported."""
    return {
        "sid": sid,
        "account_sid": account_sid,
        **{name: getattr(settings, name) for name in _SETTINGS_FIELDS},
        "status": status,
        "stage": Stage.CREATED,
        "answered_by": None,
        "duration": None,
        "sequence": 0,
        "created_at": now,
        "start_time": None,
        "answered_at": None,
        "end_time": None,
        "updated_at": now,
    }


def _is_duplicate_object(exc: DBAPIError) -> bool:
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return "already exists" in text or "duplicate" in text


async def ensure_schema(engine: AsyncEngine) -> None:
    """Create the sandbox tables if missing.

    Two processes starting together on PostgreSQL can both see a table missing and both create
    it; the loser gets a duplicate-object error, after which the table exists and a second pass
    finds nothing left to do.
    """
    attempts = 5
    for attempt in range(1, attempts + 1):
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            return
        except DBAPIError as exc:
            if attempt == attempts or not _is_duplicate_object(exc):
                raise
            logger.info("sandbox schema created concurrently by another process; checking again")


@dataclass
class _Write:
    """One queued write: a call's transition (with the callbacks it fires) or a delivery's end."""

    sid: str | None  # the call a transition changes; None for a finished callback
    changes: dict[str, Any]  # column values: of the call, or of the callback row
    callbacks: list[dict[str, Any]]
    done: asyncio.Future[None]
    callback_id: int | None = None
    # The queued callbacks as stored (with their ids), filled in by the commit.
    queued: list[Callback] = field(default_factory=list)


class CallStore:
    """Short transactions over the sandbox tables; every write is committed before it returns.

    Transitions and finished deliveries of all calls go through one writer that commits
    whatever has queued up in a single transaction (group commit): a thousand calls moving at
    once cost a few statements, not a thousand transactions fighting for the database. Each
    write still returns only once committed, so the outbox order and resume rules are unchanged.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: list[_Write] = []
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Writes waiting for the group commit."""
        return len(self._queue)

    async def insert_call(
        self, values: dict[str, Any], not_after: datetime | None = None
    ) -> SandboxCall:
        """Insert a new call, numbering it after every earlier call to the same number.

        With ``not_after``, a call not stored by then is not stored at all (CreateAbandoned).
        """
        calls = sandbox_calls.c
        for attempt in range(5):
            try:
                async with self._engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        # Number calls to one number one at a time (SQLite's BEGIN IMMEDIATE
                        # already serialises writers); the unique constraint stays as a backstop.
                        lock_key = func.hashtext(values["to_number"])
                        await conn.execute(select(func.pg_advisory_xact_lock(lock_key)))
                    previous = await conn.scalar(
                        select(func.coalesce(func.max(calls.attempt_number), 0)).where(
                            calls.to_number == values["to_number"]
                        )
                    )
                    row = {**values, "attempt_number": int(previous or 0) + 1}
                    if not_after is not None and utcnow() > not_after:
                        raise CreateAbandoned(values["sid"])
                    await conn.execute(insert(sandbox_calls).values(**row))
                return SandboxCall(**row)
            except IntegrityError:
                # Another process numbered a call to the same number first; count again.
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def get(self, sid: str) -> SandboxCall | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(sandbox_calls).where(sandbox_calls.c.sid == sid))
            ).first()
        return _call(row) if row is not None else None

    async def all_calls(self, to: str | None = None) -> list[SandboxCall]:
        """Every call, oldest first."""
        calls = sandbox_calls.c
        query = select(sandbox_calls).order_by(calls.created_at, calls.sid)
        if to:
            query = query.where(calls.to_number == to)
        async with self._engine.connect() as conn:
            return [_call(row) for row in await conn.execute(query)]

    async def page(
        self,
        account_sid: str,
        filters: CallFilter,
        *,
        limit: int,
        offset: int = 0,
        after: SandboxCall | None = None,
    ) -> list[SandboxCall]:
        """One page of calls, newest first as Twilio lists them."""
        calls = sandbox_calls.c
        query = select(sandbox_calls).where(calls.account_sid == account_sid)
        for condition in self._conditions(filters):
            query = query.where(condition)
        if after is not None:
            query = query.where(
                or_(
                    calls.created_at < after.created_at,
                    (calls.created_at == after.created_at) & (calls.sid < after.sid),
                )
            )
        else:
            query = query.offset(offset)
        query = query.order_by(calls.created_at.desc(), calls.sid.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_call(row) for row in await conn.execute(query)]

    @staticmethod
    def _conditions(filters: CallFilter) -> list[Any]:
        calls = sandbox_calls.c
        # A call that has not been dialled yet has no start time; its creation stands in, so a
        # client reconciling an ambiguous create (StartTime>=) finds a call still queued.
        started = func.coalesce(calls.start_time, calls.created_at, type_=UTCDateTime())
        conditions: list[Any] = []
        if filters.to:
            conditions.append(calls.to_number == filters.to)
        if filters.from_:
            conditions.append(calls.from_number == filters.from_)
        if filters.status:
            conditions.append(calls.status == filters.status)
        if filters.parent_call_sid:
            # Sandbox calls are all parents: nothing was spawned by a <Dial>.
            conditions.append(false())
        if filters.start_from:
            conditions.append(started >= filters.start_from)
        if filters.start_before:
            conditions.append(started < filters.start_before)
        if filters.end_from:
            conditions.append(calls.end_time >= filters.end_from)
        if filters.end_before:
            conditions.append(calls.end_time < filters.end_before)
        return conditions

    async def prune(self, before: datetime, batch: int = 2000) -> int:
        """Delete ended calls created before ``before``, with their callbacks (retention).

        In batches, each its own short transaction; calls still running are kept however old.
        """
        calls, cbs = sandbox_calls.c, sandbox_callbacks.c
        deleted = 0
        while True:
            async with self._engine.begin() as conn:
                sids = list(
                    await conn.scalars(
                        select(calls.sid)
                        .where(calls.created_at < before, calls.stage == Stage.ENDED)
                        .limit(batch)
                    )
                )
                if sids:
                    await conn.execute(delete(sandbox_callbacks).where(cbs.call_sid.in_(sids)))
                    await conn.execute(delete(sandbox_calls).where(calls.sid.in_(sids)))
            deleted += len(sids)
            if len(sids) < batch:
                return deleted

    async def unfinished_sids(self) -> list[str]:
        """Calls still in progress, or ended with callbacks not yet delivered."""
        calls = sandbox_calls.c
        undelivered = select(sandbox_callbacks.c.call_sid).where(
            sandbox_callbacks.c.state == CallbackState.PENDING
        )
        query = (
            select(calls.sid)
            .where(or_(calls.stage != Stage.ENDED, calls.sid.in_(undelivered)))
            .order_by(calls.created_at)
        )
        async with self._engine.connect() as conn:
            return list((await conn.scalars(query)).all())

    async def transition(
        self,
        call: SandboxCall,
        changes: dict[str, Any],
        callbacks: Sequence[dict[str, Any]] = (),
    ) -> SandboxCall:
        """Apply `changes` to the call and queue `callbacks`, in one commit."""
        moved, _ = await self.transition_queueing(call, changes, callbacks)
        return moved

    async def transition_queueing(
        self,
        call: SandboxCall,
        changes: dict[str, Any],
        callbacks: Sequence[dict[str, Any]] = (),
    ) -> tuple[SandboxCall, list[Callback]]:
        """`transition`, also returning the callbacks it queued as stored, in firing order."""
        changes = {"updated_at": utcnow(), **changes}
        rows = [
            {
                "call_sid": call.sid,
                "state": CallbackState.PENDING,
                "attempts": 0,
                "created_at": changes["updated_at"],
                **callback,
            }
            for callback in callbacks
        ]
        queued = await self._write(call.sid, changes, rows)
        return replace(call, **changes), queued

    async def callbacks(self, call_sid: str, *, pending_only: bool = False) -> list[Callback]:
        """The callbacks of one call, in firing order."""
        cbs = sandbox_callbacks.c
        query = select(sandbox_callbacks).where(cbs.call_sid == call_sid).order_by(cbs.id)
        if pending_only:
            query = query.where(cbs.state == CallbackState.PENDING)
        async with self._engine.connect() as conn:
            return [_callback(row) for row in await conn.execute(query)]

    async def finish_callback(
        self, callback_id: int, *, state: str, attempts: int, response_status: int | None
    ) -> None:
        changes = {
            "state": state,
            "attempts": attempts,
            "response_status": response_status,
            "finished_at": utcnow(),
        }
        await self._write(None, changes, [], callback_id=callback_id)

    async def close(self) -> None:
        """Stop the writer once nothing is queued (the writes already made are committed)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        queued, self._queue = self._queue, []
        for write in queued:
            write.done.cancel()

    # ------------------------------------------------------------------ group commit

    async def _write(
        self,
        sid: str | None,
        changes: dict[str, Any],
        callbacks: list[dict[str, Any]],
        *,
        callback_id: int | None = None,
    ) -> list[Callback]:
        loop = asyncio.get_running_loop()
        write = _Write(sid, changes, callbacks, loop.create_future(), callback_id)
        self._queue.append(write)
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._wakeup = asyncio.Event()
            self._writer = loop.create_task(self._run_writer(), name="sandbox-store-writer")
        assert self._wakeup is not None
        self._wakeup.set()
        # shield: a caller cancelled mid-commit leaves the batch (and the others in it) alone.
        await asyncio.shield(write.done)
        return write.queued

    async def _run_writer(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            await wakeup.wait()
            wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    async with self._engine.begin() as conn:
                        await _apply_writes(conn, batch)
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch, exc)
                        continue
                    # One bad write must not fail the others: each goes again on its own.
                    for write in batch:
                        try:
                            async with self._engine.begin() as conn:
                                await _apply_writes(conn, [write])
                        except Exception as exc:
                            _settle([write], exc)
                        else:
                            _settle([write], None)
                else:
                    _settle(batch, None)


def _settle(batch: list[_Write], error: BaseException | None) -> None:
    for write in batch:
        if write.done.done():
            continue
        if error is None:
            write.done.set_result(None)
        else:
            write.done.set_exception(error)


async def _apply_writes(conn: Any, batch: list[_Write]) -> None:
    """Run a batch of writes in the caller's transaction, alike statements as one executemany."""
    calls = sandbox_calls.c
    transitions = [w for w in batch if w.sid is not None]
    sids = [w.sid for w in transitions]
    if len(set(sids)) != len(sids):
        # Two changes to one call: keep their order, one statement each.
        for write in transitions:
            await conn.execute(
                update(sandbox_calls).where(calls.sid == write.sid).values(**write.changes)
            )
    else:
        by_columns: dict[tuple[str, ...], list[_Write]] = {}
        for write in transitions:
            by_columns.setdefault(tuple(sorted(write.changes)), []).append(write)
        for columns, writes in by_columns.items():
            await _update_each(
                conn, sandbox_calls, "sid", columns, [(w.sid, w.changes) for w in writes]
            )
    rows = [row for write in transitions for row in write.callbacks]
    if rows:
        cbs = sandbox_callbacks.c
        await conn.execute(insert(sandbox_callbacks), rows)
        # Each write learns its callbacks' ids by their (random, unique) tokens, read back
        # through the (call_sid, state) index: a read per batch, where RETURNING in parameter
        # order would cost a statement per row.
        sids = sorted({row["call_sid"] for row in rows})
        ids: dict[str, int] = {}
        for start in range(0, len(sids), 500):
            stored = await conn.execute(
                select(cbs.idempotency_token, cbs.id).where(
                    cbs.call_sid.in_(sids[start : start + 500]),
                    cbs.state == CallbackState.PENDING,
                )
            )
            ids.update((token, id_) for token, id_ in stored)
        for write in transitions:
            write.queued = [
                Callback(
                    id=ids[row["idempotency_token"]],
                    finished_at=None,
                    response_status=None,
                    **{
                        name: row[name]
                        for name in _CALLBACK_FIELDS
                        if name not in ("id", "finished_at", "response_status")
                    },
                )
                for row in write.callbacks
            ]
    finished = [w for w in batch if w.callback_id is not None]
    if finished:
        columns = ("state", "attempts", "response_status", "finished_at")
        await _update_each(
            conn,
            sandbox_callbacks,
            "id",
            columns,
            [(w.callback_id, w.changes) for w in finished],
        )


async def _update_each(
    conn: Any,
    table: Table,
    key: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, dict[str, Any]]],
) -> None:
    """One UPDATE run for every (key value, values) of ``rows`` as one executemany: the row of
    ``table`` whose ``key`` column has that value gets its ``columns`` set from the values."""
    c = table.c
    statement = (
        update(table)
        .where(c[key] == bindparam(f"w_{key}", type_=c[key].type))
        .values({name: bindparam(f"w_{name}", type_=c[name].type) for name in columns})
    )
    await conn.execute(
        statement,
        [
            {f"w_{key}": value, **{f"w_{name}": row[name] for name in columns}}
            for value, row in rows
        ],
    )
