"""B10: what one call lifecycle costs the database, in SQL statements and transactions.

`callbridge serve` places a campaign of answered calls (one attempt each) through a sandbox
carrier in a process of its own, so that only callbridge's own statements are counted: serve's
`callbridge_db_statements_total` and `callbridge_db_transactions_total` (SQLAlchemy's engine
events) read from /metrics before the start and after the campaign completed. A lifecycle is the
claim and dial, each status callback, the TwiML request, the decision after the call and its share
of the campaign's completion. The statements the node makes while idle (housekeeping, the
dispatcher's polls) are measured over the same length of time and taken off.

There is no baseline and no target of its own: the figures show how far the call path is from
"a handful of statements" (the performance issue), before and after each change.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.b2_lifecycles import answered_campaign
from bench.common import Context, Figure
from tests.cluster import SandboxProcess
from tests.service import Service, wait_until


def _db_counts(service: Service) -> dict[str, float]:
    text = requests.get(f"{service.url}/metrics", timeout=10).text
    counts = {"statements": 0.0, "commits": 0.0, "rollbacks": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "callbridge_db_statements_total":
                counts["statements"] = sample.value
            elif sample.name == "callbridge_db_transactions_total":
                counts[f"{sample.labels['end']}s"] = sample.value
    return counts


def _spent(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in after}


def measure(ctx: Context, database: str, url: str, contacts: int) -> list[Figure]:
    carrier = SandboxProcess(
        url,
        ctx.workdir,
        CALLBRIDGE_SANDBOX_RING_SECONDS="0",
        CALLBRIDGE_SANDBOX_TALK_SECONDS="0",
    ).start()
    service = Service(url, ctx.workdir, CALLBRIDGE_SANDBOX_URL=carrier.url).start()
    try:
        campaign_id = answered_campaign(service, "b10", contacts, concurrency=20)
        before = _db_counts(service)
        started = time.monotonic()
        assert service.api("POST", f"/api/v1/campaigns/{campaign_id}/start").status_code == 200

        def completed() -> bool:
            state = service.api("GET", f"/api/v1/campaigns/{campaign_id}").json()
            return state["status"] == "completed"

        wait_until(completed, timeout=1800, interval=0.5, what="the campaign to complete")
        took = time.monotonic() - started
        after = _db_counts(service)
        # The same time idle: what the node spends whatever it does, and the status polls above.
        idle_from = _db_counts(service)
        idle_until = time.monotonic() + took
        while time.monotonic() < idle_until:
            service.api("GET", f"/api/v1/campaigns/{campaign_id}")
            time.sleep(0.5)
        idle = _spent(_db_counts(service), idle_from)
        placed = len(carrier.calls())
    finally:
        service.stop()
        carrier.stop()
    spent = _spent(after, before)
    per_call = {key: (spent[key] - idle[key]) / contacts for key in spent}
    notes = (
        f"{contacts:,} answered calls in {took:.0f} s; per lifecycle "
        f"{per_call['statements']:.1f} statements, {per_call['commits']:.1f} commits, "
        f"{per_call['rollbacks']:.1f} rollbacks (idle over the same time taken off: "
        f"{idle['statements']:.0f} statements); {placed:,} calls at the carrier"
    )
    extra: dict[str, Any] = {"per_lifecycle": per_call, "run": spent, "idle": idle}
    return [
        Figure(
            bench="B10",
            what="SQL statements per call lifecycle",
            value=per_call["statements"],
            unit="statements",
            database=database,
            notes=notes,
            extra=extra,
        ),
        Figure(
            bench="B10",
            what="transactions per call lifecycle",
            value=per_call["commits"] + per_call["rollbacks"],
            unit="transactions",
            database=database,
            extra=extra,
        ),
    ]


def run(ctx: Context) -> list[Figure]:
    contacts = ctx.scale(2_000, 200)
    figures: list[Figure] = []
    for database in ctx.databases:
        with ctx.database(database) as url:
            figures += measure(ctx, database, url, contacts)
    return figures
