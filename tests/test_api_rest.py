"""REST completeness, API keys and rate limiting, and the export that opens harmlessly."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import requests

from tests.campaign_flow import create_campaign, start, wait_completed
from tests.service import Service

DANGEROUS = {
    "link": '=HYPERLINK("http://example.invalid/x","Click")',
    "plus": "+1+1",
    "minus": "-2+3",
    "at": "@SUM(A1:A2)",
    "tab": "\t=1+1",
    "cr": "\r=1+1",
}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def test_campaigns_contacts_and_calls_over_rest(service: Service) -> None:
    first = create_campaign(service, name="first", retry_delay_seconds=1)
    second = create_campaign(service, name="second")
    added = service.api(
        "POST",
        f"/api/v1/campaigns/{first}/contacts",
        json={
            "contacts": [
                {"phone_number": "+12025550100", "id": "a", "dynamic_variables": {"n": 1}},
                {"phone_number": "+12025550171", "id": "b"},
                {"phone_number": "not a number"},
                {"phone_number": "+1 202 555 0100"},
            ]
        },
    )
    assert added.status_code == 200
    report = added.json()
    assert (report["accepted"], report["rejected"]) == (2, 2)
    assert [e["reason"] for e in report["errors"]] == ["unparseable", "duplicate"]

    # Listing with filters and the ElevenLabs-style pagination headers.
    page = service.api("GET", "/api/v1/campaigns?per_page=1&page=2")
    assert page.headers["X-Total-Count"] == "2" and page.headers["X-Page"] == "2"
    assert [c["id"] for c in page.json()] == [first]
    drafts = service.api("GET", "/api/v1/campaigns?status=draft").json()
    assert {c["id"] for c in drafts} == {first, second}

    # A draft can be changed and deleted; a started campaign cannot.
    changed = service.api("PATCH", f"/api/v1/campaigns/{second}", json={"concurrency": 7})
    assert changed.status_code == 200 and changed.json()["concurrency"] == 7
    invalid = service.api("PATCH", f"/api/v1/campaigns/{second}", json={"max_attempts": 99})
    assert invalid.status_code == 400
    assert service.api("DELETE", f"/api/v1/campaigns/{second}").status_code == 204
    assert service.api("GET", f"/api/v1/campaigns/{second}").status_code == 404

    start(service, first)
    wait_completed(service, first)
    assert service.api("DELETE", f"/api/v1/campaigns/{first}").status_code == 409
    assert service.api("PATCH", f"/api/v1/campaigns/{first}", json={"name": "x"}).status_code == 409

    done = service.api("GET", f"/api/v1/campaigns/{first}/contacts?disposition=no_answer").json()
    assert [c["external_id"] for c in done] == ["b"]
    contact = service.api("GET", f"/api/v1/contacts/{done[0]['id']}").json()
    assert [a["number"] for a in contact["attempts"]] == [1, 2, 3]
    assert {a["status"] for a in contact["attempts"]} == {"no-answer"}

    calls = service.api("GET", f"/api/v1/campaigns/{first}/calls?status=no-answer")
    assert calls.headers["X-Total-Count"] == "3"
    answered = service.api("GET", f"/api/v1/attempts?campaign_id={first}&answered_by=human").json()
    assert len(answered) == 1 and answered[0]["phone_number"] == "+12025550100"
    later = service.api("GET", "/api/v1/attempts?since=2999-01-01T00:00:00Z")
    assert later.json() == [] and later.headers["X-Total-Count"] == "0"


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        env={**os.environ, "CALLBRIDGE_DATABASE_URL": service.env["CALLBRIDGE_DATABASE_URL"]},
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_api_keys_by_cli_and_api_with_rate_limits(service: Service) -> None:
    made = _cli(service, "keys", "create", "--name", "ci", "--rate-limit", "3")
    assert made.returncode == 0, made.stderr
    key = made.stdout.decode().strip()
    with_key = requests.Session()
    with_key.headers["xi-api-key"] = key
    url = f"{service.url}/api/v1/campaigns"
    answers = [with_key.get(url, timeout=10) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[0].headers["X-RateLimit-Remaining"] == "2"
    limited = answers[3]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert (
        int(limited.headers["Retry-After"]) >= 1 and limited.headers["X-RateLimit-Remaining"] == "0"
    )

    # The database holds only a hash of the key.
    listed = service.api("GET", "/api/v1/api-keys").json()
    assert [k["name"] for k in listed] == ["ci"] and "key" not in listed[0]
    assert key.startswith(listed[0]["prefix"])

    # Created over the API, revoked over the API: refused at once.
    created = service.api("POST", "/api/v1/api-keys", json={"name": "partner"})
    assert created.status_code == 201
    partner = created.json()
    ok = requests.get(url, headers={"Authorization": f"Bearer {partner['key']}"}, timeout=10)
    assert ok.status_code == 200
    assert service.api("DELETE", f"/api/v1/api-keys/{partner['id']}").status_code == 200
    revoked = requests.get(url, headers={"Authorization": f"Bearer {partner['key']}"}, timeout=10)
    assert revoked.status_code == 401

    # Revoked from the command line as well.
    ci_id = listed[0]["id"]
    assert _cli(service, "keys", "revoke", ci_id).returncode == 0
    listing = _cli(service, "keys", "list")
    assert "revoked" in listing.stdout.decode()


def test_export_with_formulas_opens_harmlessly(service: Service) -> None:
    campaign_id = create_campaign(service, name="export")
    added = service.api(
        "POST",
        f"/api/v1/campaigns/{campaign_id}/contacts",
        json={
            "contacts": [
                {"phone_number": "+14155550100", "id": "=1+2", "dynamic_variables": DANGEROUS},
                {"phone_number": "+14155550101", "dynamic_variables": {"link": "plain text"}},
            ]
        },
    )
    assert added.json()["accepted"] == 2
    over_http = service.api("GET", f"/api/v1/campaigns/{campaign_id}/export.csv")
    assert over_http.status_code == 200 and over_http.headers["Content-Type"].startswith("text/csv")
    from_cli = _cli(service, "export", campaign_id)
    assert from_cli.returncode == 0, from_cli.stderr
    assert from_cli.stdout == over_http.content

    rows = list(csv.reader(io.StringIO(over_http.content.decode("utf-8"), newline="")))
    header, data = rows[0], rows[1:]
    assert header[:2] == ["phone_number", "id"]
    for row in data:
        for column, cell in zip(header, row, strict=True):
            if column == "phone_number":
                # E.164 stays dialable: a leading + and digits only, which no spreadsheet runs.
                assert cell[0] == "+" and cell[1:].isdigit()
            else:
                assert not cell.startswith(FORMULA_START), (column, cell)
    by_phone = {row[0]: dict(zip(header, row, strict=True)) for row in data}
    dangerous = by_phone["+14155550100"]
    assert dangerous["link"] == "'" + DANGEROUS["link"]  # shown as text, not run
    assert dangerous["id"] == "'=1+2"
    assert by_phone["+14155550101"]["link"] == "plain text"
