"""B9: other requests while a 200 MB contacts file is imported through the API.

`callbridge serve` on a fresh database; a 200 MB CSV (4.8 million contacts) is uploaded to a
campaign while another client reads and writes through the API one request after the other
(`GET /api/v1/campaigns`, `POST /api/v1/dnc`: the probe of tests/adversarial/test_large_imports.py).
The figure is the slowest of those requests during the import (target: under 1 s); the baseline,
the slowest of the same requests with nothing imported.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import requests

from bench.common import Context, Figure
from tests.adversarial.test_large_imports import probe
from tests.campaign_flow import create_campaign
from tests.service import Service


def write_contacts(path: Path, rows: int) -> int:
    """A CSV of ``rows`` distinct valid numbers (+1 212/646/718 2XX XXXX); its size in bytes."""
    areas = ("212", "646", "718", "917")
    with path.open("w") as out:
        out.write("phone_number,id,first_name,plan\n")
        for i in range(rows):
            area, rest = areas[i // 8_000_000], i % 8_000_000
            out.write(f"+1{area}{2_000_000 + rest:07d},ext-{i},Person {i},gold\n")
    return path.stat().st_size


def measure(
    ctx: Context, database: str, url: str, csv_path: Path, size: int, rows: int
) -> list[Figure]:
    # The probes send requests back to back, for as long as the import lasts.
    service = Service(url, ctx.workdir, CALLBRIDGE_RATE_LIMIT_PER_MINUTE="1000000").start()
    try:
        idle_done = threading.Event()
        timer = threading.Timer(5.0, idle_done.set)
        timer.start()
        idle = [latency for _, latency in probe(service, lambda: not idle_done.is_set())]
        campaign_id = create_campaign(service)
        finished = threading.Event()
        latencies: list[float] = []
        prober = threading.Thread(
            target=lambda: latencies.extend(
                latency for _, latency in probe(service, lambda: not finished.is_set())
            )
        )
        prober.start()
        began = time.monotonic()
        with csv_path.open("rb") as body:
            response = requests.post(
                f"{service.url}/api/v1/campaigns/{campaign_id}/contacts",
                data=body,
                headers={**service.http.headers, "Content-Type": "text/csv"},
                timeout=3600,
            )
        took = time.monotonic() - began
        finished.set()
        prober.join()
        response.raise_for_status()
        accepted = response.json()["accepted"]
    finally:
        service.stop()
    slowest = max(latencies)
    p99 = statistics.quantiles(latencies, n=100)[98]
    notes = (
        f"{size / 1024**2:.0f} MB, {rows:,} rows ({accepted:,} accepted) imported in {took:.0f} s "
        f"({rows / took:,.0f} rows/s); {len(latencies):,} requests during it, "
        f"p99 {p99 * 1000:.0f} ms"
    )
    return [
        Figure(
            bench="B9",
            what="slowest other request during a large import",
            value=slowest,
            unit="s",
            baseline=max(idle),
            baseline_what="slowest of the same requests, nothing imported",
            database=database,
            target="value <= 1 s",
            met=slowest <= 1.0,
            notes=notes,
            extra={"requests": len(latencies), "p99_s": p99, "import_seconds": took},
        )
    ]


def run(ctx: Context) -> list[Figure]:
    rows = ctx.scale(4_800_000, 480_000)
    csv_path = ctx.workdir / "b9-contacts.csv"
    size = write_contacts(csv_path, rows)
    figures: list[Figure] = []
    for database in ctx.databases:
        with ctx.database(database) as url:
            figures += measure(ctx, database, url, csv_path, size, rows)
    return figures
