"""Keys with scopes (issue 11, point 3) and failed authentication throttled per client address
(issue 11, point 9).

Scopes are hierarchical: ``admin`` (keys, webhook subscriptions) includes ``write`` (campaigns,
calls, contacts, do-not-call, the ElevenLabs-compatible writes), which includes ``read`` (GET).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.service import API_KEY, Service

RANK = {"read": 0, "write": 1, "admin": 2}
ADMIN_PATHS = ("/api/v1/api-keys", "/api/v1/webhooks")
# Trading a key for a dashboard stream ticket writes nothing but a cookie: a read key may log in.
READ_WRITES = {("post", "/api/v1/dashboard/session"), ("delete", "/api/v1/dashboard/session")}
CAMPAIGN = {"name": "scoped", "agent_id": "agent_s", "from_number": "+15005550006"}


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[Service]:
    svc = Service(database_url, tmp_path).start()
    yield svc
    svc.stop()


def make_key(service: Service, scope: str, **extra: Any) -> dict[str, Any]:
    made = service.api(
        "POST", "/api/v1/api-keys", json={"name": f"{scope} key", "scope": scope, **extra}
    )
    assert made.status_code == 201, made.text
    assert made.json()["scope"] == scope
    return dict(made.json())


def client(key: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def expected_scope(method: str, path: str, operation: dict[str, Any]) -> str | None:
    """The policy, written out independently of the code that declares it."""
    if operation.get("security") == []:
        return None
    if path.startswith(ADMIN_PATHS):
        return "admin"
    if method == "get" or (method, path) in READ_WRITES:
        return "read"
    return "write"


def test_every_route_answers_403_exactly_when_its_scope_exceeds_the_key(service: Service) -> None:
    """Attack: a read or write key calls every route of the OpenAPI document. Promise: each route
    declares its scope in the document (as the security requirement's scopes and
    ``x-required-scope``); the answer is 403 ``insufficient_scope`` exactly when that scope is
    above the key's, and never 401/403 otherwise."""
    document = requests.get(f"{service.url}/api/openapi.json", timeout=10).json()
    keys = {scope: make_key(service, scope)["key"] for scope in RANK}
    routes: list[tuple[str, str, str | None]] = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            required = expected_scope(method, path, operation)
            declared = operation.get("x-required-scope")
            assert declared == required, (method, path, declared)
            if required is not None:
                assert operation["security"] == [
                    {"bearer": [required]},
                    {"xiApiKey": [required]},
                ], (method, path)
                assert f"`{required}`" in operation["description"], (method, path)
            routes.append((method, path, required))
    assert len(routes) > 40
    for scope, key in keys.items():
        session = client(key)
        for method, path, required in routes:
            url = service.url + re.sub(r"\{[^}]+\}", "nonexistent", path)
            body = document["paths"][path][method].get("requestBody")
            kw: dict[str, Any] = {"json": {}} if body else {}
            answer = session.request(method.upper(), url, timeout=30, **kw)
            where = f"{scope} key: {method.upper()} {path} -> {answer.status_code} {answer.text}"
            if required is not None and RANK[required] > RANK[scope]:
                assert answer.status_code == 403, where
                if path.startswith("/v1/convai/"):
                    # The ElevenLabs-compatible routes answer in ElevenLabs' shape.
                    detail = answer.json()["detail"]
                    assert detail["status"] == "insufficient_scope", where
                    assert detail["details"] == {"required_scope": required, "key_scope": scope}
                    continue
                error = answer.json()["error"]
                assert error["code"] == "insufficient_scope", where
                assert error["details"] == {"required_scope": required, "key_scope": scope}
            else:
                assert answer.status_code not in (401, 403), where
                assert answer.status_code < 500, where


def test_a_read_key_changes_nothing(service: Service) -> None:
    """Attack: a read-only key sends valid write requests (campaign, call, do-not-call, batch,
    key, webhook). Promise: each is 403 and nothing is stored; its GETs still work, and the
    dashboard session tells the page the key is read-only."""
    reader = client(make_key(service, "read")["key"])
    url = service.url
    writes = [
        ("POST", "/api/v1/campaigns", CAMPAIGN),
        ("POST", "/api/v1/calls", {"to": "+12125550142"}),
        ("POST", "/api/v1/dnc", {"phone_number": "+12125550143"}),
        (
            "POST",
            "/v1/convai/batch-calling/submit",
            {
                "call_name": "b",
                "agent_id": "agent_s",
                "recipients": [{"phone_number": "+12125550144"}],
            },
        ),
        ("POST", "/api/v1/api-keys", {"name": "escalate", "scope": "admin"}),
        ("POST", "/api/v1/webhooks", {"url": "https://example.com/h", "events": ["call.ended"]}),
    ]
    for method, path, body in writes:
        answer = reader.request(method, url + path, json=body, timeout=30)
        assert answer.status_code == 403, (path, answer.text)
    assert service.api("GET", "/api/v1/campaigns").json() == []
    assert service.api("GET", "/api/v1/dnc").json() == []
    assert [k["scope"] for k in service.api("GET", "/api/v1/api-keys").json()] == ["read"]
    assert service.api("GET", "/api/v1/webhooks").json() == []

    assert reader.get(url + "/api/v1/campaigns", timeout=10).status_code == 200
    session = reader.post(url + "/api/v1/dashboard/session", timeout=10)
    assert session.status_code == 200 and session.json()["scope"] == "read"
    campaign = service.api("POST", "/api/v1/campaigns", json=CAMPAIGN).json()["id"]
    assert reader.get(f"{url}/api/v1/dashboard/campaigns/{campaign}", timeout=10).ok
    # The dashboard's buttons (start, pause, cancel) and its intake are writes.
    for action in ("start", "cancel"):
        answer = reader.post(f"{url}/api/v1/campaigns/{campaign}/{action}", timeout=10)
        assert answer.status_code == 403
    preview = reader.post(
        f"{url}/api/v1/dashboard/intake-preview",
        data=b"phone_number\n+12125550145\n",
        headers={"Content-Type": "text/csv"},
        timeout=10,
    )
    assert preview.status_code == 403
    assert service.api("GET", f"/api/v1/campaigns/{campaign}").json()["status"] == "draft"


def test_a_write_key_cannot_manage_keys_or_webhooks(service: Service) -> None:
    """Attack: a write key creates a key (even an admin one), lists keys, revokes another key
    and subscribes a webhook. Promise: all 403, the other key keeps working; campaign work is
    allowed."""
    writer = client(make_key(service, "write")["key"])
    other = make_key(service, "read")
    url = service.url
    for body in ({"name": "mine"}, {"name": "mine", "scope": "admin"}):
        assert writer.post(url + "/api/v1/api-keys", json=body, timeout=10).status_code == 403
    assert writer.get(url + "/api/v1/api-keys", timeout=10).status_code == 403
    revoke = writer.delete(f"{url}/api/v1/api-keys/{other['id']}", timeout=10)
    assert revoke.status_code == 403
    assert client(other["key"]).get(url + "/api/v1/campaigns", timeout=10).status_code == 200
    hook = {"url": "https://example.com/h", "events": ["call.ended"]}
    assert writer.post(url + "/api/v1/webhooks", json=hook, timeout=10).status_code == 403
    assert writer.get(url + "/api/v1/webhooks", timeout=10).status_code == 403
    assert len(service.api("GET", "/api/v1/api-keys").json()) == 2
    assert writer.post(url + "/api/v1/campaigns", json=CAMPAIGN, timeout=10).status_code == 201


def test_no_key_can_raise_its_own_limits(service: Service) -> None:
    """Attack: an admin key limited to 5 requests a minute creates a key allowed 100,000 (or a
    key without a limit, which would get the service default of 600). Promise: 403
    ``rate_limit_exceeds_own``; a key created without a limit takes its creator's; the
    bootstrap key cannot exceed the service default either; a key made with no scope is
    ``write``, never ``admin``."""
    slow = make_key(service, "admin", rate_limit_per_minute=5)
    slow_client = client(slow["key"])
    url = service.url + "/api/v1/api-keys"
    higher = slow_client.post(url, json={"name": "x", "rate_limit_per_minute": 100000}, timeout=10)
    assert higher.status_code == 403
    assert higher.json()["error"]["code"] == "rate_limit_exceeds_own"
    inherited = slow_client.post(url, json={"name": "child"}, timeout=10)
    assert inherited.status_code == 201, inherited.text
    assert inherited.json()["rate_limit_per_minute"] == 5
    assert inherited.json()["scope"] == "write"
    over_default = service.api(
        "POST", "/api/v1/api-keys", json={"name": "y", "rate_limit_per_minute": 601}
    )
    assert over_default.status_code == 403
    names = [k["name"] for k in service.api("GET", "/api/v1/api-keys").json()]
    assert names == ["admin key", "child"]


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        env={**os.environ, "CALLBRIDGE_DATABASE_URL": service.env["CALLBRIDGE_DATABASE_URL"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_creates_and_lists_keys_with_scopes(service: Service) -> None:
    """Promise: ``callbridge keys create --scope read`` makes a key that may only read, and
    ``keys list`` shows every key's scope; a key made without ``--scope`` is ``write``."""
    made = _cli(service, "keys", "create", "--name", "ro", "--scope", "read", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["scope"] == "read"
    reader = client(created["key"])
    assert reader.get(service.url + "/api/v1/campaigns", timeout=10).status_code == 200
    refused = reader.post(service.url + "/api/v1/campaigns", json=CAMPAIGN, timeout=10)
    assert refused.status_code == 403
    assert _cli(service, "keys", "create", "--name", "rw").returncode == 0
    listing = _cli(service, "keys", "list")
    assert re.search(r"ro\s+read\b", listing.stdout), listing.stdout
    assert re.search(r"rw\s+write\b", listing.stdout), listing.stdout


def _get(service: Service, key: str, source: str) -> http.client.HTTPResponse:
    """A request from another loopback address (127.0.0.0/8 is all ours on Linux)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", service.port, timeout=10, source_address=(source, 0)
    )
    connection.request("GET", "/api/v1/campaigns", headers={"Authorization": f"Bearer {key}"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_a_burst_of_failed_authentications_is_throttled(service: Service) -> None:
    """Attack: one address guesses keys as fast as it can. Promise: after 10 failures within a
    minute it gets 429 with Retry-After for every request that presents a key, the right one
    too (or a 200 would tell which guess was right), while other addresses are not affected."""
    attacker = "127.0.0.1"
    answers = [_get(service, f"cb_guess_{i}", attacker).status for i in range(12)]
    assert answers == [401] * 10 + [429] * 2
    refused = _get(service, API_KEY, attacker)
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert _get(service, API_KEY, "127.0.0.2").status == 200
    assert _get(service, "cb_guess_x", "127.0.0.3").status == 401


def test_the_failure_table_forgets_and_stays_bounded() -> None:
    """Promise: an address is let through again once its failures are a minute old, and the
    table of addresses never grows past its cap, whatever the number of addresses."""
    from bridge.api.auth_throttle import FailedAuthThrottle

    now = [1000.0]
    throttle = FailedAuthThrottle(
        max_failures=10, window_seconds=60, max_addresses=1000, clock=lambda: now[0]
    )
    for _ in range(10):
        throttle.failed("198.51.100.7")
    assert throttle.retry_after("198.51.100.7") == 60
    now[0] += 59.5
    assert throttle.retry_after("198.51.100.7") == 1
    now[0] += 0.5
    assert throttle.retry_after("198.51.100.7") == 0
    for i in range(50_000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(throttle) <= 1000
