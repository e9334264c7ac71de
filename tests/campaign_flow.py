"""A campaign driven through the REST API, and what the sandbox's outcome table predicts for it."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.service import Service, wait_until

# Written out again on purpose, from the README's table: an independent oracle for the sandbox.
PREDICTED = [
    (range(0, 60), "answered", 1),
    (range(60, 70), "voicemail", 1),
    (range(70, 80), "no_answer", 3),
    (range(80, 85), "busy", 3),
    (range(85, 90), "failed", 3),
    (range(90, 95), "answered", 2),
    (range(95, 100), "voicemail", 3),
]


def predicted(e164: str) -> tuple[str, int]:
    """(disposition, attempts) for a number under max_attempts 3."""
    last_two = int(e164[-2:])
    for digits, disposition, attempts in PREDICTED:
        if last_two in digits:
            return disposition, attempts
    raise AssertionError(e164)


# 555-0100..0199 is reserved for fiction in every North American area code: these ring nobody.
AREA_CODES = ("201", "202", "212", "305", "312", "415", "503", "617", "646", "702", "808", "907")


def numbers(count: int, first_area: int = 0) -> list[str]:
    """Fictional numbers whose last two digits run 00..99, one area code per hundred."""
    return [f"+1{AREA_CODES[first_area + i // 100]}5550{100 + i % 100}" for i in range(count)]


def contacts_csv(phones: list[str]) -> bytes:
    rows = ["phone_number,id,first_name"]
    rows += [f"{p},ext-{i},Person {i}" for i, p in enumerate(phones)]
    return ("\n".join(rows) + "\n").encode()


def create_campaign(service: Service, **overrides: Any) -> str:
    body = {
        "name": "e2e",
        "agent_id": "agent_e2e",
        "from_number": "+15005550006",
        "max_attempts": 3,
        "retry_delay_seconds": 1,
        "concurrency": 40,
        **overrides,
    }
    response = service.api("POST", "/api/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "draft"
    return str(response.json()["id"])


def upload(service: Service, campaign_id: str, csv_bytes: bytes) -> dict[str, Any]:
    response = service.api(
        "POST",
        f"/api/v1/campaigns/{campaign_id}/contacts",
        data=csv_bytes,
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def start(service: Service, campaign_id: str) -> None:
    response = service.api("POST", f"/api/v1/campaigns/{campaign_id}/start")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "running"


def campaign(service: Service, campaign_id: str) -> dict[str, Any]:
    response = service.api("GET", f"/api/v1/campaigns/{campaign_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_completed(service: Service, campaign_id: str, timeout: float = 180) -> dict[str, Any]:
    return wait_until(
        lambda: (state := campaign(service, campaign_id))["status"] == "completed" and state,
        timeout=timeout,
        interval=0.2,
        what=f"campaign {campaign_id} to complete",
    )


def export_rows(service: Service, campaign_id: str) -> list[dict[str, str]]:
    response = service.api("GET", f"/api/v1/campaigns/{campaign_id}/export.csv")
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def attempt_of(call: dict[str, Any]) -> str:
    return parse_qs(urlsplit(call["status_callback"]).query)["attempt_id"][0]


def assert_matches_table(service: Service, campaign_id: str, phones: list[str]) -> None:
    rows = {row["phone_number"]: row for row in export_rows(service, campaign_id)}
    assert sorted(rows) == sorted(phones)
    wrong = {
        phone: (rows[phone]["disposition"], int(rows[phone]["attempts"]), predicted(phone))
        for phone in phones
        if (rows[phone]["disposition"], int(rows[phone]["attempts"])) != predicted(phone)
    }
    assert not wrong, f"dispositions/attempts off the table: {wrong}"
    calls = service.sandbox_calls()
    dials = Counter(call["to"] for call in calls)
    over = {p: dials[p] for p in phones if dials[p] != predicted(p)[1]}
    per_attempt = Counter(attempt_of(call) for call in calls)
    twice = {a: n for a, n in per_attempt.items() if n > 1}
    # Both checked before either fails: together they tell a repeated create from a lost one.
    extra = [
        (c["to"], attempt_of(c), c["created_at"], c["status"]) for c in calls if c["to"] in over
    ]
    assert not over, f"sandbox dial counts off the table: {over}; their calls: {extra}"
    assert not twice, f"attempts dialled more than once: {twice}"


# Every hour of the week, so the campaign calls now, in two periods and three intervals.
ALL_WEEK = [
    {
        "weekdays": [0, 1, 2, 3, 4],
        "intervals": [{"start": "00:00", "end": "12:00"}, {"start": "12:00", "end": "24:00"}],
    },
    {"weekdays": [5, 6], "intervals": [{"start": "00:00", "end": "24:00"}]},
]


def outbound_campaign(service: Service, caller_id: str, count: int = 12) -> str:
    """An outbound campaign created through the ElevenLabs-compatible API, with a full policy."""
    response = service.api(
        "POST",
        "/v1/convai/outbound-campaigns/campaigns/submit",
        json={
            "call_name": "panels",
            "agent_id": "agent_e2e",
            "recipients": [
                {"id": f"r{i}", "phone_number": phone} for i, phone in enumerate(numbers(count))
            ],
            "channel_config": {"channel": "phone", "agent_phone_number_id": caller_id},
            "target_concurrency_limit": 2,
            "policy": {
                "timezone": "America/Chicago",
                "calling_periods": ALL_WEEK,
                "retry": {
                    "retry_delay_seconds": 1,
                    "max_short_retries": 2,
                    "interval_placement": "rotate",
                    "rotate_step_seconds": 900,
                    "max_total_calls": 4,
                    "max_consecutive_failures_per_number": 2,
                },
            },
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["campaign"]["campaign_id"])
