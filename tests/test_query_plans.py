"""The queries that run all the time (a campaign's read, /metrics, housekeeping's sweeps,
retention, a group of callbacks, a campaign's completion) reach the tables that grow with history
through an index, on both databases.

The statements are the real ones, captured as the product's own functions run them; each is
then explained. A table that grows with every call must be searched by an index condition,
never scanned whole (SQLite's SCAN, PostgreSQL's Seq Scan or an index scanned without a
condition): a scan is what makes CPU per call and read latency rise as the history grows.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.ops.metrics import Metrics
from campaigns import lifecycle, retention, transitions, verdicts
from campaigns.call_events import record_events
from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow
from campaigns.reconciliation import Reconciler
from tests.dialer_fakes import Provider

GROWING = {"contacts", "attempts", "call_events", "webhook_deliveries"}


async def hot_statements(sm: async_sessionmaker[AsyncSession]) -> list[tuple[str, Any]]:
    engine = sm.kw["bind"]
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        now = utcnow()
        async with sm() as session:
            await lifecycle.campaign_counts(session, "cmp_x")
            await lifecycle.next_call_at(session, "cmp_x")
            await transitions.has_open_contact(session, "cmp_x")
        await Metrics().refresh(sm, now)
        reconciler = Reconciler(sm, Provider(), started_at=now)
        await reconciler.reconcile_expired_leases()
        await reconciler.refresh_live_calls(older_than=timedelta(seconds=60))
        await reconciler.refresh_live_calls()
        await verdicts.refresh_missing_verdicts(sm, Provider(), timedelta(seconds=60))
        await retention.prune(sm, now - timedelta(days=1))
        await lifecycle.complete_finished(sm)
        # A group of callbacks: its attempts and its duplicates are looked up at once.
        await record_events(sm, [_ringing("CAplan1", "att_plan1"), _ringing("CAplan2", None)])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(seen) >= 10, seen
    return seen


def _ringing(call_id: str, attempt_id: str | None) -> CallUpdate:
    return CallUpdate(
        provider="twilio",
        provider_call_id=call_id,
        kind="status",
        received_at=utcnow(),
        attempt_id=attempt_id,
        status="ringing",
        sequence=1,
    )


def _sqlite_scans(rows: list[Any]) -> list[str]:
    # EXPLAIN QUERY PLAN rows: (id, parent, notused, detail), e.g. "SEARCH attempts USING ..."
    scans = []
    for row in rows:
        words = str(row[3]).split()
        if len(words) > 1 and words[0] == "SCAN" and words[1] in GROWING:
            scans.append(str(row[3]))
    return scans


def _postgres_scans(plan: dict[str, Any], leading: dict[str, str]) -> list[str]:
    """Scans of a growing table: a Seq Scan, or an index read whole (PostgreSQL may apply a
    condition on a later column of an index while reading all of it, so the index's leading
    column must be in the condition)."""
    scans = []
    relation = plan.get("Relation Name")
    node = plan["Node Type"]
    if relation in GROWING and node == "Seq Scan":
        scans.append(f"{node} on {relation}")
    index = plan.get("Index Name")
    if index is not None and plan.get("Relation Name", relation) in GROWING | {None}:
        condition = plan.get("Index Cond", "")
        if f"{leading.get(index, '?')} " not in condition.replace(")", " "):
            scans.append(f"{node} using {index} ({condition or 'no condition'})")
    for child in plan.get("Plans", []):
        scans += _postgres_scans(child, leading)
    return scans


async def test_hot_queries_search_the_growing_tables_through_an_index(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    statements = await hot_statements(sm)
    engine = sm.kw["bind"]
    found: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        leading: dict[str, str] = {}
        if conn.dialect.name == "postgresql":
            # Each index's first column: a condition on it is what makes an index search.
            result = await conn.exec_driver_sql(
                "SELECT c.relname, a.attname FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            )
            leading = {str(name): str(column) for name, column in result}
        for statement, parameters in statements:
            if conn.dialect.name == "sqlite":
                result = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                scans = _sqlite_scans(list(result))
            else:
                # Tables are empty here: without this the planner would rightly scan them.
                await conn.exec_driver_sql("SET enable_seqscan = off")
                result = await conn.exec_driver_sql(
                    f"EXPLAIN (FORMAT JSON) {statement}", parameters
                )
                plan = result.scalar()
                plan = json.loads(plan) if isinstance(plan, str) else plan
                scans = _postgres_scans(plan[0]["Plan"], leading)
            if scans:
                found[" ".join(statement.split())[:300]] = scans
    assert not found, json.dumps(found, indent=1)


async def test_a_campaigns_counts_are_read_from_one_index_never_from_its_calls(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    """A campaign's counts (its read in the API, polled by dashboards and scripts) do not grow
    with its calls: one index of its contacts, read alone, and nothing of the attempts table,
    which grows with every call."""
    engine = sm.kw["bind"]
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if not statement.startswith("BEGIN"):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with sm() as session:
            await lifecycle.campaign_counts(session, "cmp_x")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(seen) == 1, seen
    statement, parameters = seen[0]
    async with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            result = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            reads = [str(row[3]) for row in result]
            assert reads == [
                "SEARCH contacts USING COVERING INDEX ix_contacts_counts (campaign_id=?)"
            ], reads
        else:
            await conn.exec_driver_sql("SET enable_seqscan = off")
            result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
            plan = result.scalar()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            reads = _relations(plan[0]["Plan"])
            assert reads == [("Index Only Scan", "contacts", "ix_contacts_counts")], reads


def _relations(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The tables a plan reads: (node, table, index)."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Node Type"], plan["Relation Name"], plan.get("Index Name", "")))
    for child in plan.get("Plans", []):
        found += _relations(child)
    return found
