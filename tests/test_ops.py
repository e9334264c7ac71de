"""What operators watch and rely on: health and readiness, Prometheus metrics, JSON logs with
nothing personal or secret in them, the circuit breaker, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from bridge.sandbox.store import Stage, sandbox_calls
from bridge.sandbox.wire import UNVERIFIED_FROM
from bridge.settings import SANDBOX_AUTH_TOKEN
from campaigns.clock import as_utc, utcnow
from campaigns.db import make_engine
from campaigns.models import Attempt, AttemptStatus
from tests.campaign_flow import (
    assert_matches_table,
    campaign,
    contacts_csv,
    create_campaign,
    numbers,
    start,
    upload,
    wait_completed,
)
from tests.service import API_KEY, Service, wait_until


def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by the Prometheus text parser."""
    response = requests.get(f"{service.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_health_readiness_and_metrics_move_as_calls_happen(
    database_url: str, tmp_path: Path
) -> None:
    service = Service(database_url, tmp_path).start()
    try:
        assert requests.get(f"{service.url}/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{service.url}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["checks"] == {
            "database": True,
            "scheduler": True,
            "accepting_work": True,
        }

        before = scrape(service)
        assert value(before, "callbridge_calls_placed_total") == 0
        assert value(before, "callbridge_live_calls") == 0
        phones = numbers(100)
        campaign_id = create_campaign(service, concurrency=20)
        upload(service, campaign_id, contacts_csv(phones))
        start(service, campaign_id)
        # Mid-run the gauge of live calls shows the calls in flight.
        wait_until(
            lambda: value(scrape(service), "callbridge_live_calls") > 0,
            timeout=60,
            what="live calls on /metrics",
        )
        wait_completed(service, campaign_id)
        after = scrape(service)
        dials = len(service.sandbox_calls())
        assert value(after, "callbridge_calls_placed_total") == dials == 155
        # Per the table, 100 numbers take 155 attempts: 60 + 5 answered, 10 + 5 voicemail,
        # 30 + 10 no answer, 15 + 5 busy, 15 failed.
        ended = {
            outcome: value(after, "callbridge_attempts_ended_total", outcome=outcome)
            for outcome in ("answered", "voicemail", "busy", "no_answer", "failed")
        }
        assert ended == {"answered": 65, "voicemail": 15, "busy": 20, "no_answer": 40, "failed": 15}
        status_route = (("route", "/webhooks/twilio/status"),)
        assert after[("callbridge_webhook_seconds_count", status_route)] >= dials
        assert value(after, "callbridge_live_calls") == 0
        assert value(after, "callbridge_dispatch_lag_seconds") == 0
        # What the calls cost the database: every placed call took statements and commits.
        statements = value(after, "callbridge_db_statements_total")
        commits = value(after, "callbridge_db_transactions_total", end="commit")
        assert statements - value(before, "callbridge_db_statements_total") > dials
        assert commits - value(before, "callbridge_db_transactions_total", end="commit") > dials
    finally:
        service.stop()


def test_circuit_breaker_pauses_a_campaign_whose_calls_all_fail_with_21210(
    database_url: str, tmp_path: Path
) -> None:
    service = Service(database_url, tmp_path).start()
    try:
        phones = numbers(40)
        campaign_id = create_campaign(service, concurrency=2, from_number=UNVERIFIED_FROM)
        upload(service, campaign_id, contacts_csv(phones))
        start(service, campaign_id)
        state = wait_until(
            lambda: (c := campaign(service, campaign_id))["status"] == "paused" and c,
            timeout=60,
            what="the circuit breaker to pause the campaign",
        )
        items = service.api("GET", f"/api/v1/campaigns/{campaign_id}/attention").json()["items"]
        assert len(items) == 1
        item = items[0]
        assert item["open"] and item["kind"] == "circuit_breaker" and item["code"] == "21210"
        assert "21210" in item["message"] and "not verified" in item["message"]
        assert UNVERIFIED_FROM in item["remedy"] and "resume" in item["remedy"]
        assert service.api("GET", "/api/v1/attention").json()["items"] == items
        # Stopped early instead of burning through the list: nothing reached the carrier.
        assert service.sandbox_calls() == []
        assert state["counts"]["attempts"] < 10
        assert state["counts"]["pending"] > 25
        assert value(scrape(service), "callbridge_attention_items_open") == 1
        assert value(scrape(service), "callbridge_provider_errors_total", code="21210") >= 5

        # The fix (a caller id the account owns), then resume: the campaign runs to its end.
        fixed = service.api(
            "PATCH",
            f"/api/v1/campaigns/{campaign_id}",
            json={"from_number": "+15005550006", "concurrency": 20},
        )
        assert fixed.status_code == 200, fixed.text
        resumed = service.api("POST", f"/api/v1/campaigns/{campaign_id}/resume")
        assert resumed.status_code == 200, resumed.text
        done = wait_completed(service, campaign_id)
        assert done["counts"]["pending"] == 0 and len(service.sandbox_calls()) > 25
        items = service.api("GET", f"/api/v1/campaigns/{campaign_id}/attention").json()["items"]
        assert [i["open"] for i in items] == [False]
        assert service.api("GET", "/api/v1/attention").json()["items"] == []
    finally:
        service.stop()


E164 = re.compile(r"\+\d{10,15}")


def test_json_logs_mask_numbers_and_keep_secrets_out(database_url: str, tmp_path: Path) -> None:
    service = Service(database_url, tmp_path, CALLBRIDGE_LOG_FORMAT="json").start()
    try:
        phones = numbers(20)
        campaign_id = create_campaign(service)
        upload(service, campaign_id, contacts_csv(phones))
        start(service, campaign_id)
        wait_completed(service, campaign_id)
    finally:
        service.stop()
    lines = [line for line in service.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("dialled +1201***0" in r["message"] for r in records)
    text = "\n".join(lines)
    assert not E164.findall(text), E164.findall(text)[:5]
    assert API_KEY not in text and SANDBOX_AUTH_TOKEN not in text


def test_sigterm_stops_claiming_and_lets_live_calls_finish(
    database_url: str, tmp_path: Path
) -> None:
    service = Service(
        database_url,
        tmp_path,
        CALLBRIDGE_SANDBOX_TALK_SECONDS="3",
        CALLBRIDGE_SHUTDOWN_GRACE_SECONDS="30",
    ).start()
    phones = numbers(60)
    try:
        campaign_id = create_campaign(service, concurrency=10)
        upload(service, campaign_id, contacts_csv(phones))
        start(service, campaign_id)
        wait_until(
            lambda: sum(c["status"] == "in-progress" for c in service.sandbox_calls()) >= 3,
            timeout=60,
            what="calls in progress",
        )
        assert service.process is not None
        signalled_at = utcnow()
        service.process.send_signal(signal.SIGTERM)
        draining = wait_until(
            lambda: _readiness(service) == 503 or service.process.poll() is not None,
            timeout=30,
            what="readiness to drop",
        )
        assert draining
        assert service.process.wait(timeout=60) == 0
    finally:
        service.stop()
    calls, attempts = asyncio.run(_stored(database_url))
    assert calls and all(stage == Stage.ENDED for _, stage in calls), calls
    assert all(a.status not in AttemptStatus.LIVE for a in attempts)
    # Nothing was claimed after the signal, and the campaign was left unfinished for later.
    assert all(as_utc(a.created_at) < signalled_at for a in attempts)
    assert len(attempts) < len(phones)

    # The next start carries on where the first one stopped.
    service = Service(database_url, tmp_path).start()
    try:
        wait_completed(service, campaign_id)
        assert_matches_table(service, campaign_id, phones)
    finally:
        service.stop()


def _readiness(service: Service) -> int | None:
    try:
        return requests.get(f"{service.url}/readyz", timeout=2).status_code
    except requests.ConnectionError:
        return None


async def _stored(database_url: str) -> tuple[list[Any], list[Any]]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            calls = list(await conn.execute(select(sandbox_calls.c.sid, sandbox_calls.c.stage)))
            attempts = list(await conn.execute(select(Attempt.status, Attempt.created_at)))
        return calls, attempts
    finally:
        await engine.dispose()
