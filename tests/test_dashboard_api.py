"""The dashboard's server side against `callbridge serve`: assets, stream tickets, the live stream,
the intake preview, the contact search, and a campaign's policy, attention items and follow-ups."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import requests

from bridge.dashboard.pages import STATIC
from bridge.dashboard.session import COOKIE, STREAM_PATH, Tickets
from bridge.sandbox.wire import UNVERIFIED_FROM
from tests.campaign_flow import (
    contacts_csv,
    create_campaign,
    numbers,
    outbound_campaign,
    predicted,
    start,
    upload,
)
from tests.service import API_KEY, Service, wait_until


def ticket_cookie(service: Service) -> str:
    response = service.api("POST", "/api/v1/dashboard/session")
    assert response.status_code == 200, response.text
    return response.cookies[COOKIE]


def events(response: requests.Response) -> Iterator[tuple[str, Any]]:
    """(event name, parsed data) for each Server-Sent Event on an open stream."""
    name, data = "message", []
    for raw in response.iter_lines(decode_unicode=True):
        if raw == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif raw.startswith("event:"):
            name = raw[6:].strip()
        elif raw.startswith("data:"):
            data.append(raw[5:].strip())


def test_page_and_assets_ship_in_the_package_under_a_strict_policy(service: Service) -> None:
    page = requests.get(service.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
        response = requests.get(service.url + asset, timeout=10)
        assert response.status_code == 200, asset
    # No asset fetches anything from elsewhere (the SVG namespace is a name, not a request).
    for path in STATIC.iterdir():
        urls = set(re.findall(r"https?://[^\s\"'`)]+", path.read_text()))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
    for probe in ("..%2Fapi.py", "api.py", ".hidden.js", "missing.js"):
        assert (
            requests.get(f"{service.url}/dashboard/static/{probe}", timeout=10).status_code == 404
        )


def test_the_stream_needs_a_ticket_bought_with_the_api_key(service: Service) -> None:
    stream = service.url + STREAM_PATH
    refused = requests.get(stream, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert requests.post(service.url + "/api/v1/dashboard/session", timeout=10).status_code == 401

    response = service.api("POST", "/api/v1/dashboard/session")
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and f"Path={STREAM_PATH}" in cookie
    ticket = response.cookies[COOKIE]
    assert API_KEY not in ticket
    forged = ticket[:-1] + ("0" if ticket[-1] != "0" else "1")
    foreign, _ = Tickets("another node's secret").issue()
    for bad in (forged, foreign, "1.2.3", ""):
        assert requests.get(stream, cookies={COOKIE: bad}, timeout=10).status_code == 401

    with requests.get(stream, cookies={COOKIE: ticket}, stream=True, timeout=10) as opened:
        assert opened.status_code == 200
        assert opened.headers["Content-Type"].startswith("text/event-stream")
        name, document = next(events(opened))
        assert name == "campaigns" and document == {"campaigns": [], "total": 0}


def test_tickets_expire_and_a_shared_secret_serves_every_node() -> None:
    node_a, node_b = Tickets("shared"), Tickets("shared")
    ticket, expires = node_a.issue(now=1_000_000, ttl=600)
    assert node_b.expiry(ticket, now=1_000_599) == expires == 1_000_600
    assert node_b.expiry(ticket, now=1_000_600) is None
    assert Tickets().expiry(ticket, now=1_000_000) is None  # a random secret: this process only


def test_the_stream_pushes_a_campaign_to_its_end(service: Service) -> None:
    phones = numbers(20)
    campaign_id = create_campaign(service, concurrency=4, retry_delay_seconds=1)
    upload(service, campaign_id, contacts_csv(phones))
    cookie = ticket_cookie(service)
    seen: list[dict[str, Any]] = []
    with requests.get(
        f"{service.url}{STREAM_PATH}?campaign={campaign_id}",
        cookies={COOKIE: cookie},
        stream=True,
        timeout=30,
    ) as opened:
        for name, document in events(opened):
            assert name == "campaign"
            seen.append(document)
            if len(seen) == 1:
                # The first document is the full state, sent as soon as the stream opens.
                assert document["status"] == "draft" and document["counts"]["contacts"] == 20
                start(service, campaign_id)
            if document["status"] == "completed":
                break
    final = seen[-1]
    assert final["counts"]["done"] == 20 and final["live_calls"] == []
    expected: dict[str, int] = {}
    for phone in phones:
        disposition = predicted(phone)[0]
        expected[disposition] = expected.get(disposition, 0) + 1
    assert {k: v for k, v in final["counts"]["dispositions"].items() if v} == expected
    done = [d["counts"]["done"] for d in seen]
    assert done == sorted(done) and len(set(done)) > 3, (
        f"progress was not pushed as it came: {done}"
    )
    dials = sum(m["calls"] for m in final["calls_per_minute"]["minutes"])
    assert dials == sum(predicted(p)[1] for p in phones)
    assert any(d["live_calls"] for d in seen), "no live call was ever shown"


def test_intake_preview_reports_rows_and_stores_nothing(service: Service) -> None:
    body = "phone_number,id\n+14155550100,a\n12345,b\n+14155550100,c\n(415) 555-0101,d\n"
    response = service.api(
        "POST",
        "/api/v1/dashboard/intake-preview?default_region=US",
        data=body.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "rows": 4,
        "accepted": 2,
        "rejected": 2,
        "errors": [
            {"row": 3, "value": "12345", "reason": "invalid"},
            {"row": 4, "value": "+14155550100", "reason": "duplicate"},
        ],
    }
    refused = service.api(
        "POST",
        "/api/v1/dashboard/intake-preview",
        data=b"name\nAda\n",
        headers={"Content-Type": "text/csv"},
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "csv_refused"
    bad_region = service.api(
        "POST", "/api/v1/dashboard/intake-preview?default_region=USA", data=b""
    )
    assert bad_region.status_code == 422
    assert service.api("GET", "/api/v1/dashboard/campaigns").json() == {"campaigns": [], "total": 0}


def test_contacts_search_by_number_external_id_and_filters(service: Service) -> None:
    phones = numbers(30)
    campaign_id = create_campaign(service)
    upload(service, campaign_id, contacts_csv(phones))
    path = f"/api/v1/dashboard/campaigns/{campaign_id}/contacts"

    def search(**query: str) -> dict[str, Any]:
        response = service.api("GET", path, params=query)
        assert response.status_code == 200, response.text
        return dict(response.json())

    everyone = search(per_page="10")
    assert everyone["total"] == 30 and len(everyone["contacts"]) == 10
    assert [c["row_number"] for c in everyone["contacts"]] == list(range(2, 12))
    assert search(page="3", per_page="10")["contacts"][-1]["phone_number"] == phones[-1]
    typed = search(q="(201) 555-0117")
    assert [c["phone_number"] for c in typed["contacts"]] == ["+12015550117"]
    assert [c["external_id"] for c in search(q="EXT-29")["contacts"]] == ["ext-29"]
    assert search(q="ext-2")["total"] == 11  # ext-2 and ext-20..29
    assert search(q="100%_")["total"] == 0  # LIKE wildcards are literal
    assert search(state="pending")["total"] == 30
    assert search(disposition="answered")["total"] == 0
    bad = service.api("GET", path, params={"per_page": "5000"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_query"
    assert service.api("GET", "/api/v1/dashboard/contacts/ct_nope").status_code == 404

    contact = everyone["contacts"][0]
    detail = service.api("GET", f"/api/v1/dashboard/contacts/{contact['id']}").json()
    assert detail["phone_number"] == contact["phone_number"]
    assert detail["attempts"] == 0 and detail["calls"] == []
    assert detail["dynamic_variables"] == {"first_name": "Person 0"}
    unauthenticated = requests.get(f"{service.url}{path}", timeout=10)
    assert unauthenticated.status_code == 401


def test_a_campaign_page_shows_its_policy_attention_items_and_follow_ups(
    service: Service,
) -> None:
    # A caller id the account may not use: every call fails with 21210, the circuit breaker
    # pauses the campaign and raises an attention item.
    campaign_id = outbound_campaign(service, UNVERIFIED_FROM)
    path = f"/api/v1/dashboard/campaigns/{campaign_id}"

    def view() -> dict[str, Any]:
        response = service.api("GET", path)
        assert response.status_code == 200, response.text
        return dict(response.json())

    page = wait_until(
        lambda: (v := view())["attention"]["items"] and v["status"] == "paused" and v,
        timeout=60,
        what="the circuit breaker's attention item on the campaign page",
    )
    policy = page["policy"]
    assert policy["timezone"] == "America/Chicago" and policy["windows_read_in"] == "recipient"
    assert policy["calling_periods"] == [
        {"weekdays": [0, 1, 2, 3, 4], "start": "00:00", "end": "12:00"},
        {"weekdays": [0, 1, 2, 3, 4], "start": "12:00", "end": "24:00"},
        {"weekdays": [5, 6], "start": "00:00", "end": "24:00"},
    ]
    assert policy["retry"] == {
        "retry_delay_seconds": 1,
        "max_total_calls": 4,
        "max_short_retries": 2,
        "interval_placement": "rotate",
        "rotate_step_seconds": 900,
        "max_consecutive_failures_per_number": 2,
        "end_after_number_failures": True,
        "max_attempts_per_day": None,
    }
    words = policy["words"]
    assert words["windows"] == ["Mon-Fri 00:00-12:00, 12:00-24:00", "Sat-Sun 00:00-24:00"]
    assert "each recipient's own time zone" in words["zone"]
    assert "America/Chicago" in words["zone"]
    assert words["retry"] == [
        "At most 4 calls per lead, at least 1 s apart.",
        "At most 3 calls of a lead in one calling window; the next goes to a later window, "
        "15 min later into it than the last call.",
        "After 2 failed calls in a row on one number, the lead's next number is called (then "
        "the lead ends when it has no other).",
    ]

    [item] = page["attention"]["items"]
    assert item["open"] is True
    assert item["reason"] == "circuit_breaker" and item["code"] == "21210"
    assert "21210" in item["message"] and UNVERIFIED_FROM in item["remedy"]
    assert item["since"].endswith("Z") and item["resolved_at"] is None
    # No stored follow-up request yet: the panel's data is empty, not missing.
    assert page["follow_ups"] == {"items": [], "more": False}

    # Resolved through the outbound-campaigns API: still listed, marked resolved, with how.
    resolved = service.api(
        "POST",
        f"/v1/convai/outbound-campaigns/attention/{item['id']}/resolve",
        json={"resolution": "caller id replaced"},
    )
    assert resolved.status_code == 200, resolved.text
    [after] = view()["attention"]["items"]
    assert after["id"] == item["id"] and after["open"] is False
    assert after["resolved_at"] is not None and after["resolution"] == "caller id replaced"
    assert page["outbound_campaign"] is True

    # A campaign of callbridge's own API shows the policy it runs under all the same.
    plain = create_campaign(
        service,
        max_attempts=2,
        retry_delay_seconds=3600,
        rule_set="us_tcpa",
        max_attempts_per_day=1,
    )
    shown = service.api("GET", f"/api/v1/dashboard/campaigns/{plain}").json()
    assert shown["outbound_campaign"] is False
    assert shown["policy"]["rule_set"] == "us_tcpa"
    words = shown["policy"]["words"]
    assert words["windows"] == ["Any time of day"]
    assert "US TCPA hours (08:00-21:00 local) and state rules apply" in words["zone"]
    assert words["retry"][0] == "At most 2 calls per lead, at least 1 h apart."
    assert words["retry"][-1] == "At most 1 call per lead per local day."
    assert shown["attention"] == {"items": [], "more": False}
