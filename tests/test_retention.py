"""Retention: call events, finished webhook deliveries and the sandbox's call log older than
CALLBRIDGE_RETENTION_DAYS are deleted; newer rows, pending deliveries and running sandbox calls
stay. On SQLite and PostgreSQL alike (the suite's database)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.app import create_app
from bridge.sandbox.store import CallStore, Stage, ensure_schema, sandbox_callbacks, sandbox_calls
from bridge.settings import Settings
from campaigns import retention
from campaigns.api_tables import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
)
from campaigns.clock import utcnow
from campaigns.models import CallEvent
from tests.conftest import eventually
from tests.service import API_KEY, free_port

DAYS = 30


async def _count(sm: async_sessionmaker[AsyncSession], table: Any) -> int:
    async with sm() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_prune_deletes_only_what_is_older_than_the_retention(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=DAYS + 1), now - timedelta(days=DAYS - 1)
    async with sm.begin() as session:
        session.add(
            WebhookSubscription(id="wh_1", url="https://example.com/h", events=["*"], secret="s")
        )
        await session.flush()
        for i, at in enumerate([old] * 5 + [recent] * 2):
            session.add(
                CallEvent(
                    provider="twilio",
                    kind="status",
                    dedupe_key=f"k{i}",
                    payload={"n": i},
                    received_at=at,
                )
            )
        deliveries = [
            ("old_done", old, DeliveryStatus.DELIVERED),
            ("old_failed", old, DeliveryStatus.FAILED),
            ("old_pending", old, DeliveryStatus.PENDING),
            ("new_done", recent, DeliveryStatus.DELIVERED),
        ]
        for id_, at, status in deliveries:
            session.add(
                WebhookDelivery(
                    id=id_,
                    subscription_id="wh_1",
                    event_id=f"ev_{id_}",
                    event_type="call.ended",
                    payload={},
                    status=status,
                    next_attempt_at=at,
                    created_at=at,
                )
            )
        await session.flush()
        session.add(
            WebhookDeliveryAttempt(
                delivery_id="old_done", attempted_at=old, status_code=200, duration_ms=3
            )
        )

    # A small batch: the deletions go in several transactions.
    deleted = await retention.prune(sm, retention.cutoff(now, DAYS), batch=2)  # type: ignore[arg-type]

    assert deleted == {"call_events": 5, "webhook_deliveries": 2}
    async with sm() as session:
        kept_events = set(await session.scalars(select(CallEvent.dedupe_key)))
        kept_deliveries = set(await session.scalars(select(WebhookDelivery.id)))
    assert kept_events == {"k5", "k6"}
    assert kept_deliveries == {"old_pending", "new_done"}
    assert await _count(sm, WebhookDeliveryAttempt) == 0
    # Nothing left to do: a second pass deletes nothing.
    again = await retention.prune(sm, retention.cutoff(now, DAYS), batch=2)  # type: ignore[arg-type]
    assert again == {"call_events": 0, "webhook_deliveries": 0}


def test_retention_is_a_setting_and_zero_keeps_everything() -> None:
    assert Settings.from_env({}).retention_days == 90
    assert Settings.from_env({"CALLBRIDGE_RETENTION_DAYS": "7"}).retention_days == 7
    assert retention.cutoff(utcnow(), 0) is None
    with pytest.raises(ValueError, match="CALLBRIDGE_RETENTION_DAYS"):
        Settings.from_env({"CALLBRIDGE_RETENTION_DAYS": "-1"})


def _call(sid: str, at: Any, stage: str) -> dict[str, Any]:
    return {
        "sid": sid,
        "account_sid": "AC0",
        "to_number": f"+1212555{sid[-4:]}",
        "from_number": "+15005550006",
        "url": None,
        "status_callback": None,
        "status_callback_events": [],
        "machine_detection": None,
        "async_amd": False,
        "async_amd_status_callback": None,
        "timeout": 30,
        "time_limit": 60,
        "status": "completed" if stage == Stage.ENDED else "ringing",
        "stage": stage,
        "answered_by": None,
        "attempt_number": 1,
        "duration": 0,
        "sequence": 0,
        "created_at": at,
        "start_time": None,
        "answered_at": None,
        "end_time": None,
        "updated_at": at,
        "params": {},
    }


async def test_the_sandbox_call_log_is_pruned_but_running_calls_stay(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    engine = sm.kw["bind"]
    await ensure_schema(engine)
    now = utcnow()
    old, recent = now - timedelta(days=DAYS + 1), now - timedelta(days=1)
    rows = [
        _call("CA0000000000000000000000000000001", old, Stage.ENDED),
        _call("CA0000000000000000000000000000002", old, Stage.ENDED),
        _call("CA0000000000000000000000000000003", old, Stage.RINGING),
        _call("CA0000000000000000000000000000004", recent, Stage.ENDED),
    ]
    async with engine.begin() as conn:
        await conn.execute(sandbox_calls.insert(), rows)
        await conn.execute(
            sandbox_callbacks.insert(),
            [
                {
                    "call_sid": row["sid"],
                    "event": "completed",
                    "sequence_number": 0,
                    "url": "http://127.0.0.1/cb",
                    "method": "POST",
                    "params": {},
                    "idempotency_token": f"t{i}",
                    "state": "delivered",
                    "attempts": 1,
                    "created_at": row["created_at"],
                }
                for i, row in enumerate(rows)
            ],
        )
    store = CallStore(engine)
    assert await store.prune(retention.cutoff(now, DAYS), batch=1) == 2  # type: ignore[arg-type]
    async with engine.connect() as conn:
        calls = set(await conn.scalars(select(sandbox_calls.c.sid)))
        callbacks = set(await conn.scalars(select(sandbox_callbacks.c.call_sid)))
    assert calls == callbacks == {rows[2]["sid"], rows[3]["sid"]}


async def test_housekeeping_of_a_running_service_prunes_old_history(
    sm: async_sessionmaker[AsyncSession],
    aiohttp_server: Any,
    aiohttp_client: Any,
    database_url: str,
) -> None:
    now = utcnow()
    async with sm.begin() as session:
        for key, at in (("old", now - timedelta(days=DAYS + 1)), ("new", now)):
            session.add(
                CallEvent(
                    provider="twilio", kind="status", dedupe_key=key, payload={}, received_at=at
                )
            )
    port = free_port()
    settings = Settings(
        database_url=database_url, port=port, api_keys=(API_KEY,), retention_days=DAYS
    )
    await aiohttp_client(await aiohttp_server(create_app(settings), port=port))

    async def kept() -> set[str]:
        async with sm() as session:
            return set(await session.scalars(select(CallEvent.dedupe_key)))

    # The first housekeeping pass after the start prunes (later ones every few minutes).
    async def pruned() -> bool:
        return await kept() == {"new"}

    await eventually(pruned, within=30, what="the old call events pruned", every=0.1)
