"""Issue 11, point 9 (last sentence): a large import never stalls other requests.

SQLite has one writer: an import stored in one long transaction held every other request that
needed the database (the API, the dashboard, the dispatcher) until it ended: 35 s behind a
20 MB file. While a large contacts or do-not-call file is imported, reads and writes of other
requests must still answer within a second, and the import must still be all or nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.campaign_flow import create_campaign
from tests.service import Service

# The probes send requests back to back, for as long as the import lasts.
UNTHROTTLED = {"CALLBRIDGE_RATE_LIMIT_PER_MINUTE": "1000000"}
# Fictional but valid numbers: +1 415 2XX XXXX gives 800,000 distinct ones.
_FIRST = 2_000_000


def phones(count: int, offset: int = 0) -> list[str]:
    return [f"+1415{_FIRST + offset + i:07d}" for i in range(count)]


def contacts_file(count: int) -> bytes:
    lines = ["phone_number,id,first_name,plan"]
    lines += [f"{p},ext-{i},Person {i},gold" for i, p in enumerate(phones(count))]
    return ("\n".join(lines) + "\n").encode()


def dnc_file(count: int) -> bytes:
    lines = ["phone_number,reason"]
    lines += [f"{p},asked" for p in phones(count, offset=400_000)]
    return ("\n".join(lines) + "\n").encode()


class Upload(threading.Thread):
    """One import request, sent in the background; its answer is kept."""

    def __init__(self, service: Service, path: str, body: bytes) -> None:
        super().__init__(daemon=True)
        self.service, self.path, self.body = service, path, body
        self.response: requests.Response | None = None

    def run(self) -> None:
        self.response = requests.post(
            f"{self.service.url}{self.path}",
            data=self.body,
            headers={**self.service.http.headers, "Content-Type": "text/csv"},
            timeout=600,
        )


def probe(service: Service, running: Callable[[], bool]) -> list[tuple[str, float]]:
    """Read and write through the API for as long as ``running()``; each request's latency."""
    seen: list[tuple[str, float]] = []
    number = 0
    while running():
        number += 1
        listed = {"phone_number": f"+1212555{number % 10_000:04d}"}
        for method, path, body in (
            ("GET", "/api/v1/campaigns", None),
            ("POST", "/api/v1/dnc", listed),
        ):
            began = time.monotonic()
            response = service.api(method, path, json=body)
            seen.append((f"{method} {path}", time.monotonic() - began))
            assert response.status_code < 300, (method, path, response.status_code, response.text)
    return seen


def probe_while(upload: Upload, service: Service) -> list[tuple[str, float]]:
    seen = probe(service, upload.is_alive)
    upload.join()
    return seen


def assert_never_stalled(seen: list[tuple[str, float]]) -> None:
    slow = [(name, round(latency, 2)) for name, latency in seen if latency >= 1.0]
    print(f"{len(seen)} requests during the import, slowest {max(t for _, t in seen):.3f} s")
    assert not slow, f"{len(slow)} of {len(seen)} requests took 1 s or more: {slow[:10]}"
    assert len(seen) >= 10, f"the import was over before it could be probed ({seen})"


def test_a_large_contacts_import_does_not_stall_other_requests(
    database_url: str, tmp_path: Path
) -> None:
    """Attack: upload a large contact file and, while it is stored, use the API.
    Promise: every other request answers within 1 s, and the file is imported whole."""
    rows = 60_000
    service = Service(database_url, tmp_path, **UNTHROTTLED).start()
    try:
        campaign_id = create_campaign(service)
        upload = Upload(service, f"/api/v1/campaigns/{campaign_id}/contacts", contacts_file(rows))
        upload.start()
        seen = probe_while(upload, service)
        assert upload.response is not None and upload.response.status_code == 200
        assert upload.response.json()["accepted"] == rows
        assert_never_stalled(seen)
        counts = service.api("GET", f"/api/v1/campaigns/{campaign_id}").json()["counts"]
        assert counts["pending"] == rows
    finally:
        service.stop()


def test_a_large_do_not_call_import_does_not_stall_other_requests(
    database_url: str, tmp_path: Path
) -> None:
    """Attack: upload a large do-not-call file and, while it is stored, use the API.
    Promise: every other request answers within 1 s, and every number of the file is listed."""
    rows = 60_000
    service = Service(database_url, tmp_path, **UNTHROTTLED).start()
    try:
        upload = Upload(service, "/api/v1/dnc", dnc_file(rows))
        upload.start()
        seen = probe_while(upload, service)
        assert upload.response is not None and upload.response.status_code == 200, (
            upload.response and upload.response.text
        )
        assert upload.response.json()["added"] == rows
        assert_never_stalled(seen)
        last = phones(rows, offset=400_000)[-1]
        again = service.api("POST", "/api/v1/dnc", json={"phone_number": last})
        assert again.status_code == 200, again.text  # 200: listed already (201 would add it)
    finally:
        service.stop()
