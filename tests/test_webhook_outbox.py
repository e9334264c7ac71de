"""Outgoing webhooks: a receiver that is down at first still gets every event exactly once,
correctly signed; a receiver answering 410 is unsubscribed."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bridge.outgoing.signing import verify
from tests.campaign_flow import contacts_csv, create_campaign, numbers, predicted, start, upload
from tests.service import Service, free_port, wait_until

SECRET = "whsec_test_" + "s" * 24
DOWN_FOR = 6


class Receiver:
    """An HTTP receiver that answers 503 to its first ``down_for`` requests, then 200."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    if self.path == "/gone":
                        status = 410
                    else:
                        status = 503 if len(receiver.requests) < receiver.down_for else 200
                    receiver.requests.append((self.path, dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for p, h, b, s in self.requests if p == "/hook" and s == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(DOWN_FOR)
    yield r
    r.close()


pytestmark = pytest.mark.service_env(
    # Backoff in fractions of a second instead of minutes; the schedule's shape is the same.
    CALLBRIDGE_WEBHOOK_RETRY_BASE_SECONDS="0.2",
    CALLBRIDGE_WEBHOOK_RETRY_MAX_SECONDS="1",
    CALLBRIDGE_WEBHOOK_POLL_SECONDS="0.2",
    # The receiver listens on the loopback, which webhooks may reach only when allowed.
    CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
)


def test_receiver_down_then_up_gets_every_event_once_signed(
    service: Service, receiver: Receiver
) -> None:
    events = ["call.completed", "contact.finished", "campaign.completed"]
    hook = service.api(
        "POST",
        "/api/v1/webhooks",
        json={"url": f"http://127.0.0.1:{receiver.port}/hook", "events": events, "secret": SECRET},
    )
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["id"]
    gone = service.api(
        "POST",
        "/api/v1/webhooks",
        json={"url": f"http://127.0.0.1:{receiver.port}/gone", "events": ["campaign.completed"]},
    )
    gone_id = gone.json()["id"]

    phones = numbers(100, first_area=3)[::10]  # 00, 10, ... 90: answered, voicemail, retried
    campaign_id = create_campaign(service, retry_delay_seconds=1)
    upload(service, campaign_id, contacts_csv(phones))
    start(service, campaign_id)

    calls = sum(predicted(p)[1] for p in phones)
    expected = {"call.completed": calls, "contact.finished": len(phones), "campaign.completed": 1}
    wait_until(
        lambda: len(receiver.accepted()) >= sum(expected.values()),
        timeout=120,
        interval=0.2,
        what="every event to be accepted",
    )
    accepted = receiver.accepted()
    payloads = [json.loads(body) for _, body in accepted]
    ids = Counter(p["id"] for p in payloads)
    assert all(n == 1 for n in ids.values()), f"events delivered twice: {ids}"
    assert Counter(p["type"] for p in payloads) == expected
    for headers, body in accepted:
        assert verify(SECRET, headers["Callbridge-Signature"], body)
        assert not verify("another-secret-entirely", headers["Callbridge-Signature"], body)
    # The first deliveries were refused and came again later, under the same event id.
    refused = [json.loads(b)["id"] for p, _, b, s in receiver.requests if s == 503]
    assert len(refused) == DOWN_FOR and set(refused) <= set(ids)
    finished = {p["data"]["phone_number"]: p["data"]["disposition"] for p in payloads
                if p["type"] == "contact.finished"}  # fmt: skip
    assert finished == {p: predicted(p)[0] for p in phones}

    # The delivery log shows it all: every delivery delivered, the retried ones with their 503s.
    def delivery_log() -> Any:
        log = service.api("GET", f"/api/v1/webhooks/{hook_id}/deliveries?per_page=1000")
        assert log.status_code == 200
        return log

    # The receiver counts a request before the sender has recorded its answer: wait for that.
    wait_until(
        lambda: {d["status"] for d in delivery_log().json()} == {"delivered"},
        timeout=30,
        what="every delivery to be recorded as delivered",
    )
    log = delivery_log()
    deliveries = log.json()
    assert int(log.headers["X-Total-Count"]) == sum(expected.values())
    retried = [d for d in deliveries if d["attempts"] > 1]
    assert retried
    detail = service.api("GET", f"/api/v1/webhooks/{hook_id}/deliveries/{retried[0]['id']}").json()
    codes = [a["status_code"] for a in detail["attempt_log"]]
    assert codes[-1] == 200 and set(codes[:-1]) == {503}

    # 410 Gone unsubscribes the receiver.
    wait_until(
        lambda: not service.api("GET", f"/api/v1/webhooks/{gone_id}").json()["enabled"],
        timeout=30,
        what="the 410 receiver to be disabled",
    )
    disabled = service.api("GET", f"/api/v1/webhooks/{gone_id}").json()
    assert "410" in disabled["disabled_reason"]
