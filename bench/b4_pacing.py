"""B4: pacing accuracy. A campaign at cps 10 runs for 60 s against the sandbox carrier; the
carrier's own log (the created_at of each call, GET /sandbox/calls) says how many dials it
received in 60 s and how many fell in one second.

Two ways of counting "one second" are reported:

- per wall-clock second (the dials whose created_at falls in [s, s + 1) for whole seconds s),
  which is how a carrier counts calls per second; the target is checked on this one;
- any sliding window [t, t + 1 s). At exactly cps dials per second, dial i and dial i + cps are
  1 s apart, so any jitter at all (one dial 1 ms later than the one cps places after it) puts
  cps + 1 dials in some window: a sliding-window maximum of cps is only reachable by dialling
  slower than cps, which the 600 ± 1 target rules out.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psutil

from bench.common import Context, Figure
from tests.cluster import many_numbers, most_in_sliding_second, most_per_wall_clock_second
from tests.service import Service, wait_until

CPS = 10


@contextmanager
def serve(ctx: Context, url: str, **env: str) -> Iterator[Service]:
    """`callbridge serve` with its in-process sandbox carrier, stopped afterwards."""
    # The product's own timings, not the quicker ones the test suite uses.
    defaults = {
        "CALLBRIDGE_HOUSEKEEPING_SECONDS": "5",
        "CALLBRIDGE_PROVIDER_TIMEOUT_SECONDS": "10",
    }
    service = Service(url, ctx.workdir, **{**defaults, **env})
    try:
        yield service.start()
    finally:
        service.stop()


def create_campaign(service: Service, **fields: Any) -> str:
    body = {
        "name": "bench",
        "agent_id": "agent_bench",
        "from_number": "+15005550006",
        # One dial per contact: the carrier's log then holds exactly one call per number.
        "max_attempts": 1,
        **fields,
    }
    response = service.api("POST", "/api/v1/campaigns", json=body)
    response.raise_for_status()
    return str(response.json()["id"])


def upload(service: Service, campaign_id: str, csv_text: str) -> dict[str, Any]:
    response = service.api(
        "POST",
        f"/api/v1/campaigns/{campaign_id}/contacts",
        data=csv_text.encode(),
        headers={"Content-Type": "text/csv"},
    )
    response.raise_for_status()
    return dict(response.json())


def start(service: Service, campaign_id: str) -> None:
    service.api("POST", f"/api/v1/campaigns/{campaign_id}/start").raise_for_status()


def created(call: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(call["created_at"])


def sent_times(service: Service, campaign_id: str) -> dict[str, datetime]:
    """When the dispatcher sent each create (after its pacing check), by provider call id."""
    sent: dict[str, datetime] = {}
    page = 1
    while True:
        response = service.api(
            "GET", f"/api/v1/campaigns/{campaign_id}/calls", params={"page": page, "per_page": 1000}
        )
        response.raise_for_status()
        rows = response.json()
        rows = rows if isinstance(rows, list) else rows.get("items", rows.get("data", []))
        for row in rows:
            if row["provider_call_id"] and row["dialed_at"]:
                sent[row["provider_call_id"]] = datetime.fromisoformat(row["dialed_at"])
        if len(rows) < 1000:
            return sent
        page += 1


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _measure(ctx: Context, kind: str, seconds: int) -> list[Figure]:
    # A few seconds more contacts than the window needs: the window is never short of work.
    phones = many_numbers(CPS * (seconds + 3))
    rows = ["phone_number", *phones]
    with ctx.database(kind) as url, serve(ctx, url) as service:
        campaign_id = create_campaign(service, cps=CPS, concurrency=100)
        upload(service, campaign_id, "\n".join(rows) + "\n")
        assert service.process is not None
        process = psutil.Process(service.process.pid)
        cpu_before = sum(process.cpu_times()[:2])
        started = time.monotonic()
        start(service, campaign_id)
        wait_until(
            lambda: len(service.sandbox_calls()) >= len(phones),
            timeout=seconds + 60,
            interval=1,
            what="every contact dialled",
        )
        took = time.monotonic() - started
        cpu_share = (sum(process.cpu_times()[:2]) - cpu_before) / took
        load = os.getloadavg()[0]
        calls = service.sandbox_calls()
        sent = sent_times(service, campaign_id)

    instants = sorted(created(c) for c in calls)
    first = instants[0]
    in_window = sum(first <= t < first + timedelta(seconds=seconds) for t in instants)
    # Whole wall-clock seconds only: the first and last seconds are partly outside the run.
    whole = Counter(int(t.timestamp() // 1) for t in instants)
    inner = sorted(whole)[1:-1]
    per_second = most_per_wall_clock_second(instants)
    sliding = most_in_sliding_second(instants)
    fewest = min((whole[s] for s in inner), default=0)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(instants)]
    transit = [
        (created(c) - sent[c["sid"]]).total_seconds() * 1000 for c in calls if c["sid"] in sent
    ]
    expected = CPS * seconds
    extra = {
        "dials": len(calls),
        "distinct_numbers": len({c["to"] for c in calls}),
        "seconds_to_dial_all": round(took, 2),
        "fewest_in_an_inner_wall_clock_second": fewest,
        "per_wall_clock_second_histogram": dict(Counter(whole[s] for s in inner)),
        "smallest_gap_ms": round(min(gaps) * 1000, 2),
        "largest_gap_ms": round(max(gaps) * 1000, 2),
        "load_average_1m": round(load, 2),
        "serve_cpu_share_of_one_core": round(cpu_share, 2),
        # From the pacing check to the carrier's stamp: what the send margin has to cover.
        "send_to_carrier_ms_p99": round(_percentile(transit, 0.99), 2),
        "send_to_carrier_ms_max": round(max(transit, default=0.0), 2),
        # The same count by the dispatcher's own send times (after its pacing check).
        "most_per_wall_clock_second_by_send_time": most_per_wall_clock_second(list(sent.values())),
    }
    count_met = abs(in_window - expected) <= 1
    count_notes = ""
    if not count_met:
        short = sum(1 for s in inner if whole[s] < CPS)
        count_notes = (
            f"{short} whole seconds held fewer than {CPS} dials: a dial that woke too late for "
            "its slot's second took a fresh slot (the per-second guard) and its slot stayed "
            f"empty. Meanwhile serve used {cpu_share:.2f} of one core and the machine's load "
            f"average was {load:.1f} on {os.cpu_count()} CPUs (shared with other work)"
        )
    second_notes = "the target check counts per whole wall-clock second, as carriers count CPS"
    if per_second > CPS:
        second_notes += (
            f". The carrier stamps a create some time after it left: send-to-carrier p99 "
            f"{extra['send_to_carrier_ms_p99']} ms, max {extra['send_to_carrier_ms_max']} ms, "
            f"beyond the {1000 / CPS / 4:.0f} ms left for it at the end of a second (the "
            "in-process carrier shares serve's busy event loop); by send time the most in "
            f"one second was {extra['most_per_wall_clock_second_by_send_time']}"
        )
    return [
        Figure(
            bench="B4",
            what=f"dials in the {seconds} s from the first (cps {CPS})",
            value=in_window,
            unit="dials",
            baseline=expected,
            baseline_what=f"target rate: {CPS}/s x {seconds} s",
            database=kind,
            target=f"{expected} ± 1",
            met=count_met,
            notes=count_notes,
            extra=extra,
        ),
        Figure(
            bench="B4",
            what="most dials in one wall-clock second",
            value=per_second,
            unit="dials",
            baseline=CPS,
            baseline_what="cps",
            database=kind,
            target=f"<= {CPS} per wall-clock second (carrier's created_at)",
            met=per_second <= CPS,
            notes=second_notes,
        ),
        Figure(
            bench="B4",
            what="most dials in any sliding 1 s window",
            value=sliding,
            unit="dials",
            baseline=CPS,
            baseline_what="cps",
            database=kind,
            target="reported, not checked",
            met=None,
            notes=(
                f"at exactly {CPS}/s dial i and dial i+{CPS} are 1 s apart, so any jitter puts "
                f"{CPS + 1} in some sliding window; only a slower rate avoids it, which the "
                f"{expected} ± 1 target excludes. Smallest gap between two dials: "
                f"{extra['smallest_gap_ms']} ms"
            ),
        ),
    ]


def run(ctx: Context) -> list[Figure]:
    seconds = ctx.scale(60, 15)
    figures: list[Figure] = []
    for kind in ctx.databases:
        figures += _measure(ctx, kind, seconds)
    return figures
