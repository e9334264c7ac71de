"""Issue 11, point 1: request bodies are read whole, and refused whole (413) past their limit.

The service runs as a real process (``callbridge serve``) so that a slow client's upload reaches
it in many small pieces, as it does over a network.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.campaign_flow import contacts_csv, create_campaign, start, wait_completed
from tests.service import API_KEY, Service

AUTH = {"Authorization": f"Bearer {API_KEY}"}
DNC_LIMIT = 64 * 1024**2  # bridge.api.dnc.MAX_DNC_UPLOAD_BYTES, written out on purpose


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[Service]:
    svc = Service(database_url, tmp_path).start()
    yield svc
    svc.stop()


def dnc_numbers(count: int) -> list[str]:
    """Distinct valid New York numbers: +1 212 200-0000, 200-0001, ..."""
    return [f"+1212{200 + i // 10_000:03d}{i % 10_000:04d}" for i in range(count)]


async def trickle(body: bytes, piece: int) -> AsyncIterator[bytes]:
    """A slow client: the body in small pieces, giving the connection a turn between them."""
    for start_at in range(0, len(body), piece):
        yield body[start_at : start_at + piece]
        await asyncio.sleep(0)


async def post(url: str, data: Any, content_type: str) -> tuple[int, Any]:
    headers = {**AUTH, "Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as answer,
    ):
        return answer.status, await answer.json()


def total(service: Service, path: str) -> int:
    response = service.api("GET", path)
    assert response.status_code == 200, response.text
    return int(response.headers["X-Total-Count"])


async def test_dnc_import_from_a_slow_client_keeps_every_number(service: Service) -> None:
    """Attack: a do-not-call CSV of 20,000 numbers sent by a slow client in small pieces (the
    handler used to read only what was buffered: 8,636 of 20,000 rows stored, the last one cut
    mid-number). Promise: all 20,000 stored; a number from the last row is refused by
    POST /api/v1/calls and never dialled by a campaign that lists it."""
    numbers = dnc_numbers(20_000)
    body = ("phone_number,reason\n" + "".join(f"{n},asked\n" for n in numbers)).encode()
    status, report = await post(f"{service.url}/api/v1/dnc", trickle(body, 700), "text/csv")
    assert status == 200, report
    assert (report["rows"], report["added"], report["rejected"]) == (20_000, 20_000, 0)
    assert total(service, "/api/v1/dnc?per_page=1") == 20_000

    last = numbers[-1]
    call = service.api("POST", "/api/v1/calls", json={"to": last, "agent_id": "agent_dnc"})
    assert call.status_code == 422 and call.json()["error"]["code"] == "dnc", call.text

    campaign_id = create_campaign(service)
    intake = service.api(
        "POST",
        f"/api/v1/campaigns/{campaign_id}/contacts",
        data=contacts_csv([last, "+12125550100"]),
        headers={"Content-Type": "text/csv"},
    ).json()
    assert intake["errors"] == [{"row": 2, "value": last, "reason": "dnc"}]
    start(service, campaign_id)
    wait_completed(service, campaign_id)
    dialled = {call["to"] for call in service.sandbox_calls()}
    assert "+12125550100" in dialled and last not in dialled


async def test_dnc_import_past_the_limit_is_refused_whole(service: Service) -> None:
    """Attack: a do-not-call CSV of valid numbers one byte past the 64 MiB limit, sent without
    a length (chunked) so only reading tells its size (it used to answer 200 with the first
    rows stored). Promise: 413 body_too_large and not one entry stored."""
    line = b"+12122000000\n"
    body = b"phone_number\n" + line * ((DNC_LIMIT - 13) // len(line))
    body += b"\n" * (DNC_LIMIT + 1 - len(body))
    assert len(body) == DNC_LIMIT + 1
    status, answer = await post(f"{service.url}/api/v1/dnc", trickle(body, 1024**2), "text/csv")
    assert status == 413 and answer["error"]["code"] == "body_too_large", answer
    assert total(service, "/api/v1/dnc?per_page=1") == 0


def declared_too_large(service: Service, path: str, content_type: str, length: int) -> bytes:
    """Send headers declaring ``length`` bytes and only the start of the body; the answer."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"phone_number\n+12125550100\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_declared_size_past_the_limit_is_refused_before_reading(service: Service) -> None:
    """Attack: a contacts upload declaring 3 GiB (the limit is 2 GiB), and JSON bodies
    declaring more than theirs (8 MiB). Promise: 413 body_too_large at once, before the body is
    read (the server used to wait for all of it), and no contact stored."""
    campaign_id = create_campaign(service)
    csv_path = f"/api/v1/campaigns/{campaign_id}/contacts"
    for path, content_type, length in (
        (csv_path, "text/csv", 3 * 1024**3),
        (csv_path, "application/json", 9 * 1024**2),
        ("/api/v1/campaigns", "application/json", 9 * 1024**2),
        ("/api/v1/dnc", "text/csv", DNC_LIMIT + 1),
    ):
        answer = declared_too_large(service, path, content_type, length)
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
        assert b'"body_too_large"' in answer
    assert total(service, f"/api/v1/campaigns/{campaign_id}/contacts?per_page=1") == 0


async def test_contacts_file_refused_late_stores_nothing(service: Service) -> None:
    """Attack: a contacts CSV whose first 5,000 rows are valid and whose end is not UTF-8, sent
    slowly (the import stores in batches as it parses). Promise: 422 csv_refused and not one
    contact of the file stored: the import is one transaction."""
    campaign_id = create_campaign(service)
    body = contacts_csv(dnc_numbers(5_000)) + b"+12125550199,\xff\xfe,bad\n"
    status, answer = await post(
        f"{service.url}/api/v1/campaigns/{campaign_id}/contacts", trickle(body, 4096), "text/csv"
    )
    assert status == 422 and answer["error"]["code"] == "csv_refused", answer
    assert total(service, f"/api/v1/campaigns/{campaign_id}/contacts?per_page=1") == 0


async def test_json_and_form_bodies_past_their_limit_get_the_same_413(service: Service) -> None:
    """Attack: a JSON body of 9 MiB sent in pieces (no length) and a Twilio callback form of
    2 MiB. Promise: both refused with 413 and the same JSON error code, body_too_large;
    nothing stored."""
    campaign_id = create_campaign(service)
    contact = b'{"phone_number": "+12125550100", "dynamic_variables": {"note": "' + b"x" * 900
    body = b'{"contacts": [' + b"}},".join([contact] * 10_000) + b"}}]}"
    assert len(body) > 9 * 1024**2
    status, answer = await post(
        f"{service.url}/api/v1/campaigns/{campaign_id}/contacts",
        trickle(body, 64 * 1024),
        "application/json",
    )
    assert status == 413 and answer["error"]["code"] == "body_too_large", answer
    assert total(service, f"/api/v1/campaigns/{campaign_id}/contacts?per_page=1") == 0
    form = b"CallSid=CA00&CallStatus=completed&Junk=" + b"x" * (2 * 1024**2)
    status, answer = await post(
        f"{service.url}/webhooks/twilio/status", form, "application/x-www-form-urlencoded"
    )
    assert status == 413 and answer["error"]["code"] == "body_too_large", answer
