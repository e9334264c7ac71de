"""B5: reminders on time. 10,000 contacts with a ``call_at`` spread evenly over 60 s; the sandbox
carrier's log (the created_at of each call) says how late each was dialled, and whether every
number was dialled exactly once. The baseline is the due times themselves (lateness 0)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import psutil
from sqlalchemy.engine import make_url

from bench.b4_pacing import create_campaign, created, sent_times, serve, start, upload
from bench.common import Context, Figure
from tests.cluster import SandboxProcess, many_numbers

TARGET_P99_MS = 250.0


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("inf")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _lock_waiters(url: str, seconds: float) -> tuple[list[int], list[str]]:
    """Sample, for ``seconds``, how many sessions wait on a lock and what they were running."""

    async def sample() -> tuple[list[int], list[str]]:
        parsed = make_url(url)
        conn = await asyncpg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
        )
        counts: list[int] = []
        queries: list[str] = []
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                rows = await conn.fetch(
                    "SELECT query FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                counts.append(len(rows))
                queries += [r["query"] for r in rows]
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        return counts, queries

    return asyncio.run(sample())


def _lock_holders(queries: list[str]) -> dict[str, int]:
    """The statements found waiting on a lock, by their first words."""
    shapes = Counter(" ".join(q.split()[:6])[:80] for q in queries)
    return dict(shapes.most_common(3))


@contextmanager
def carrier(ctx: Context, kind: str, apart: bool) -> Iterator[SandboxProcess | None]:
    """The carrier as its own process with its own database (as Twilio is to a real node), or
    None for the sandbox mounted inside `callbridge serve`."""
    if not apart:
        yield None
        return
    with ctx.database(kind) as url:
        process = SandboxProcess(url, ctx.workdir).start()
        try:
            yield process
        finally:
            process.stop()


def _measure(ctx: Context, kind: str, count: int, spread: float, apart: bool) -> list[Figure]:
    phones = many_numbers(count)
    with (
        ctx.database(kind) as url,
        carrier(ctx, kind, apart) as outside,
        serve(ctx, url, **({"CALLBRIDGE_SANDBOX_URL": outside.url} if outside else {})) as service,
    ):
        carrier_calls = outside.calls if outside else service.sandbox_calls
        # Reminders are one call each, whenever they are due: no pacing, room for every call.
        campaign_id = create_campaign(service, concurrency=2000)
        # The first reminder is due once the upload is surely stored and the campaign running.
        upload_started = time.monotonic()
        first_due = datetime.now(UTC) + timedelta(seconds=ctx.scale(20, 15))
        due = {
            phone: first_due + timedelta(seconds=spread * i / count)
            for i, phone in enumerate(phones)
        }
        rows = ["phone_number,call_at", *(f"{p},{due[p].isoformat()}" for p in phones)]
        report = upload(service, campaign_id, "\n".join(rows) + "\n")
        start(service, campaign_id)
        uploaded_in = time.monotonic() - upload_started
        ready_before_due = datetime.now(UTC) < first_due
        assert service.process is not None
        process = psutil.Process(service.process.pid)
        # The service's CPU from the first due time to the last: is one core all it had?
        time.sleep(max(0.0, (first_due - datetime.now(UTC)).total_seconds()))
        cpu_before, wall_before = sum(process.cpu_times()[:2]), time.monotonic()
        waiting, waiting_queries = _lock_waiters(url, spread) if kind == "postgresql" else ([], [])
        time.sleep(max(0.0, spread - (time.monotonic() - wall_before)))
        cpu_share = (sum(process.cpu_times()[:2]) - cpu_before) / (time.monotonic() - wall_before)
        load = os.getloadavg()[0]
        # Reminders still undialled half a minute after the last was due count as missed.
        deadline = time.monotonic() + 30
        while len(carrier_calls()) < count and time.monotonic() < deadline:
            time.sleep(2)
        # Anything dialled twice would show up a moment later: look once more after it.
        time.sleep(2)
        calls = carrier_calls()
        sent = sent_times(service, campaign_id)

    dialled = Counter(c["to"] for c in calls)
    first_dial: dict[str, datetime] = {}
    for call in calls:
        at = created(call)
        if call["to"] not in first_dial or at < first_dial[call["to"]]:
            first_dial[call["to"]] = at
    missed = sum(1 for p in phones if dialled[p] == 0)
    twice = sum(1 for p in phones if dialled[p] > 1)
    lateness_ms = [(first_dial[p] - due[p]).total_seconds() * 1000 for p in first_dial]
    early = sum(1 for v in lateness_ms if v < 0)
    # Where the lateness is: before the dispatcher sent the create, or between it and the carrier.
    before_send = [
        (sent[c["sid"]] - due[c["to"]]).total_seconds() * 1000 for c in calls if c["sid"] in sent
    ]
    p99 = percentile(lateness_ms, 0.99)
    extra = {
        "carrier": "own process and database" if apart else "inside serve",
        "reminders": count,
        "spread_seconds": spread,
        "accepted": report.get("accepted"),
        "upload_and_start_seconds": round(uploaded_in, 2),
        "stored_before_first_due": ready_before_due,
        "p50_ms": round(percentile(lateness_ms, 0.5), 1),
        "p90_ms": round(percentile(lateness_ms, 0.9), 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(lateness_ms, default=float("inf")), 1),
        "mean_ms": round(statistics.fmean(lateness_ms), 1) if lateness_ms else None,
        "early": early,
        "missed": missed,
        "dialled_twice": twice,
        "calls_at_carrier": len(calls),
        "p99_due_to_sent_ms": round(percentile(before_send, 0.99), 1) if before_send else None,
        "serve_cpu_share_of_one_core": round(cpu_share, 2),
        "load_average_1m": round(load, 2),
        # PostgreSQL: sessions of this database waiting on a row lock, sampled twice a second.
        "lock_waiters_mean": round(statistics.fmean(waiting), 1) if waiting else None,
        "lock_waiters_max": max(waiting, default=None),
        "lock_waits_on": _lock_holders(waiting_queries) if waiting_queries else None,
    }
    exact = missed == 0 and twice == 0
    met = p99 <= TARGET_P99_MS and early == 0
    notes = ""
    if not met:
        # What held the dials back, as measured in this run.
        notes = (
            f"dials started late, before the send: due-to-sent p99 {extra['p99_due_to_sent_ms']} "
            f"ms; serve used {cpu_share:.2f} of one core (load average {load:.1f} on "
            f"{os.cpu_count()} CPUs), so it mostly waited on its database: "
        )
        if kind == "sqlite":
            notes += (
                "SQLite has one pooled connection (campaigns/db.py), taken in turn by every "
                "webhook, carrier step, claim and dial"
            )
        else:
            notes += (
                f"sessions waiting on a row lock: mean {extra['lock_waiters_mean']}, max "
                f"{extra['lock_waiters_max']}, mostly {extra['lock_waits_on']}"
            )
    where = " (carrier apart)" if apart else ""
    return [
        Figure(
            bench="B5",
            what=f"p99 lateness of {count:,} reminders over {spread:.0f} s{where}",
            value=round(p99, 1),
            unit="ms",
            baseline=0.0,
            baseline_what="call_at (due time)",
            database=kind,
            target=f"<= {TARGET_P99_MS:.0f} ms",
            met=met,
            notes=notes,
            extra=extra,
        ),
        Figure(
            bench="B5",
            what=f"reminders missed or dialled twice{where}",
            value=missed + twice,
            unit="numbers",
            baseline=0.0,
            baseline_what="each number dialled once",
            database=kind,
            target="== 0",
            met=exact,
            notes=f"missed {missed}, twice {twice} (from the carrier's log)",
        ),
    ]


def run(ctx: Context) -> list[Figure]:
    count = ctx.scale(10_000, 1_000)
    spread = float(ctx.scale(60, 10))
    figures: list[Figure] = []
    for kind in ctx.databases:
        # As asked: the sandbox carrier inside serve, sharing its event loop and database. Then
        # with the carrier apart, as Twilio is: what the service itself manages.
        figures += _measure(ctx, kind, count, spread, apart=False)
        figures += _measure(ctx, kind, count, spread, apart=True)
    return figures
