"""B7: memory of `callbridge serve` holding 100,000 pending contacts and 1,000 live calls.

The sandbox carrier runs as its own process (`callbridge sandbox`, as Twilio would be), ringing
every call for ten minutes, so that a campaign with concurrency 1,000 keeps 1,000 calls live
while the rest of its contacts wait. Measured with psutil, after things settle:

- baseline: a fresh `serve` on the same (freshly migrated) database, idle, no campaign;
- the same `serve` right after importing the contacts through the API (reported, not a target);
- a fresh `serve` on that database, running the campaign with 1,000 calls live: the figure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import Context, Figure

MB = 1024 * 1024
RING_SECONDS = 600  # longest ring timeout a campaign may have
SETTLE_SECONDS = 5.0


def phones(count: int) -> list[str]:
    """Distinct valid US numbers ending 00..59: people who would answer, after the ring."""
    return [f"+1212{200 + i // 6000:03d}{(i % 6000) // 60:02d}{i % 60:02d}" for i in range(count)]


def contacts_csv(numbers: list[str]) -> bytes:
    rows = ["phone_number,id,first_name"]
    rows += [f"{p},ext-{i},Person {i}" for i, p in enumerate(numbers)]
    return ("\n".join(rows) + "\n").encode()


def rss(pid: int) -> dict[str, float]:
    process = psutil.Process(pid)
    full = process.memory_full_info()
    return {"rss_mb": full.rss / MB, "uss_mb": full.uss / MB}


def settled(pid: int, seconds: float = SETTLE_SECONDS, samples: int = 5) -> dict[str, float]:
    """RSS after ``seconds`` of quiet, the highest of a few samples a second apart."""
    time.sleep(seconds)
    readings = []
    for _ in range(samples):
        readings.append(rss(pid))
        time.sleep(1.0)
    return max(readings, key=lambda r: r["rss_mb"])


def import_cost(module: str) -> float:
    """RSS (MB) a bare interpreter gains by importing ``module``: what it costs every process."""
    code = (
        "import psutil; p = psutil.Process(); before = p.memory_info().rss; "
        f"import {module}; print((p.memory_info().rss - before) / {MB})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return float(done.stdout.strip()) if done.returncode == 0 else float("nan")


def measure(ctx: Context, kind: str, contacts: int, live: int) -> dict[str, Any]:
    from tests.cluster import SandboxProcess
    from tests.service import Service, wait_until

    result: dict[str, Any] = {"contacts": contacts, "live_target": live}
    with ctx.database(kind) as url:
        carrier = SandboxProcess(
            url,
            ctx.workdir,
            CALLBRIDGE_SANDBOX_RING_SECONDS=str(RING_SECONDS),
            CALLBRIDGE_SANDBOX_TALK_SECONDS=str(RING_SECONDS),
        ).start()
        env = {
            "CALLBRIDGE_SANDBOX_URL": carrier.url,
            "CALLBRIDGE_HOUSEKEEPING_SECONDS": "5",
            "CALLBRIDGE_PROVIDER_TIMEOUT_SECONDS": "30",
        }
        try:
            # 1. Idle, and the import.
            first = Service(url, ctx.workdir, **env)
            try:
                first.start()  # stopped below even when it never becomes ready
                assert first.process is not None
                result["idle"] = settled(first.process.pid)
                body = {
                    "name": "b7",
                    "agent_id": "agent_b7",
                    "from_number": "+15005550006",
                    "max_attempts": 1,
                    "concurrency": live,
                    "ring_timeout_seconds": RING_SECONDS,
                    "time_limit_seconds": RING_SECONDS,
                }
                created = first.api("POST", "/api/v1/campaigns", json=body)
                assert created.status_code == 201, created.text
                campaign_id = str(created.json()["id"])
                started = time.monotonic()
                uploaded = first.http.post(
                    f"{first.url}/api/v1/campaigns/{campaign_id}/contacts",
                    data=contacts_csv(phones(contacts)),
                    headers={"Content-Type": "text/csv"},
                    timeout=600,
                )
                assert uploaded.status_code == 200, uploaded.text[:2000]
                result["import_seconds"] = time.monotonic() - started
                result["import_answer"] = {
                    k: v for k, v in uploaded.json().items() if isinstance(v, int | float | str)
                }
                result["after_import"] = settled(first.process.pid, seconds=2.0, samples=2)
            finally:
                first.stop()

            # 2. A fresh process runs the campaign.
            second = Service(url, ctx.workdir, **env)
            try:
                second.start()
                assert second.process is not None
                result["fresh_with_contacts"] = settled(second.process.pid, seconds=3, samples=2)
                started = time.monotonic()
                response = second.api("POST", f"/api/v1/campaigns/{campaign_id}/start")
                assert response.status_code == 200, response.text

                def ringing() -> int:
                    calls = carrier.calls()
                    return sum(1 for c in calls if c.get("status") in ("queued", "ringing"))

                wait_until(
                    lambda: ringing() >= live, timeout=300, interval=2, what=f"{live} live calls"
                )
                result["ramp_seconds"] = time.monotonic() - started
                result["loaded"] = settled(second.process.pid)
                result["live_calls"] = ringing()
                result["server_calls"] = len(carrier.calls())
            finally:
                second.stop()
        finally:
            carrier.stop()
    return result


def run(ctx: Context) -> list[Figure]:
    contacts = ctx.scale(100_000, 5_000)
    live = ctx.scale(1_000, 200)
    figures = []
    for kind in ctx.databases:
        result = measure(ctx, kind, contacts, live)
        # What the idle baseline is made of, for the report: the service's imports, and in them
        # phonenumbers' geocoder (the US state of an area code, campaigns/compliance.py).
        result["import_rss_mb"] = {
            m: import_cost(m) for m in ("bridge.app", "phonenumbers.geocoder", "phonenumbers")
        }
        idle = result["idle"]["rss_mb"]
        loaded = result["loaded"]["rss_mb"]
        added = loaded - idle
        figures.append(
            Figure(
                bench="B7",
                what=f"serve RSS, {contacts:,} pending contacts + {live:,} live calls",
                value=loaded,
                unit="MB",
                baseline=idle,
                baseline_what="idle serve, same database, no campaign",
                database=kind,
                target="value - baseline <= 150 MB",
                met=added <= 150,
                notes=(
                    f"added {added:.0f} MB; the importing process was at "
                    f"{result['after_import']['rss_mb']:.0f} MB after a "
                    f"{result['import_seconds']:.0f} s import; of the idle baseline, "
                    f"{result['import_rss_mb']['bridge.app']:.0f} MB are the service's imports, "
                    f"{result['import_rss_mb']['phonenumbers.geocoder']:.0f} MB of them "
                    "phonenumbers.geocoder (campaigns/compliance.py)"
                ),
                extra=result,
            )
        )
    return figures


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    from bench.common import postgres_server

    with tempfile.TemporaryDirectory() as tmp:
        context = Context(
            out=Path(tmp),
            databases=sys.argv[1].split(",") if len(sys.argv) > 1 else ["sqlite"],
            quick="--quick" in sys.argv,
            postgres_server=postgres_server(),
            workdir=Path(tmp),
        )
        for figure in run(context):
            print(json.dumps(figure.to_json(), indent=1))
