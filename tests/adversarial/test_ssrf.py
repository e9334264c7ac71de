"""Outgoing webhooks cannot be aimed inside (issue 11, point 2).

Every target a user gives is checked when the subscription is registered and again on the
address actually connected to at each delivery; redirects are not followed; URL credentials are
refused; delivery failures are reported without the internal detail that would make the delivery
log a port scanner. An operator setting lets a closed network deliver to private receivers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from bridge.app import create_app
from bridge.app_keys import OUTGOING_RESOLVER, SESSIONMAKER
from bridge.outgoing.signing import verify
from bridge.settings import Settings
from campaigns.api_tables import WebhookSubscription
from campaigns.clock import utcnow
from tests.conftest import housekeeping_finished
from tests.service import free_port

KEY = "ssrf-test-key-" + "0" * 16
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "whsec_ssrf_" + "s" * 24
# A public address (no request ever goes to it: the tests' names map to it only at registration).
PUBLIC = "93.184.216.34"
REFUSED = "refused: address not allowed"


class Hosts(AbstractResolver):
    """Name resolution the test controls, as an attacker controls the DNS of their own domain."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.table.get(host.rstrip(".").lower())
        if not addresses:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


@dataclass
class Receiver:
    """A local HTTP receiver: /hook answers 200, /redirect answers 307 to ``redirect_to``."""

    port: int = 0
    redirect_to: str = ""
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append((request.method, request.path, dict(request.headers), body))
            if request.path == "/redirect":
                raise web.HTTPTemporaryRedirect(self.redirect_to)
            return web.Response(status=200)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


MakeReceiver = Callable[[], Awaitable[Receiver]]


@pytest.fixture
def make_receiver(aiohttp_server: Any) -> MakeReceiver:
    async def make() -> Receiver:
        receiver = Receiver()
        server = await aiohttp_server(receiver.app(), host="127.0.0.1")
        receiver.port = server.port
        return receiver

    return make


MakeService = Callable[..., Awaitable[Any]]


@pytest.fixture
async def make_service(
    aiohttp_server: Any, aiohttp_client: Any, database_url: str
) -> AsyncIterator[MakeService]:
    made = False

    async def make(*, allow_private: bool = False, hosts: Hosts | None = None) -> Any:
        nonlocal made
        assert not made, "one service per test (one database)"
        made = True
        port = free_port()
        settings = Settings(
            database_url=database_url,
            port=port,
            api_keys=(KEY,),
            webhook_allow_private_targets=allow_private,
            webhook_poll_seconds=0.2,
            webhook_retry_base_seconds=0.2,
            webhook_retry_max_seconds=1,
        )
        app = create_app(settings)
        if hosts is not None:
            app[OUTGOING_RESOLVER] = hosts
        return await aiohttp_client(await aiohttp_server(app, port=port))

    yield make
    await housekeeping_finished()


async def subscribe(client: Any, url: str, events: tuple[str, ...] = ("call.completed",)) -> Any:
    body = {"url": url, "events": list(events), "secret": SECRET}
    return await client.post("/api/v1/webhooks", json=body, headers=AUTH)


async def api(client: Any, method: str, path: str, **kw: Any) -> Any:
    response = await client.request(method, path, headers=AUTH, **kw)
    assert response.status < 300, await response.text()
    return await response.json() if response.status != 204 else None


async def one_call(client: Any) -> None:
    """A campaign of one answered call: a call.completed event for every subscription."""
    campaign = await api(
        client,
        "POST",
        "/api/v1/campaigns",
        json={"name": "ssrf", "agent_id": "agent_ssrf", "from_number": "+15005550006"},
    )
    contacts = {"contacts": [{"phone_number": "+12025550100"}]}
    await api(client, "POST", f"/api/v1/campaigns/{campaign['id']}/contacts", json=contacts)
    await api(client, "POST", f"/api/v1/campaigns/{campaign['id']}/start")


async def first_delivery(
    client: Any, subscription_id: str, ready: Callable[[dict[str, Any]], bool], within: float = 60
) -> dict[str, Any]:
    """The subscription's first delivery once ``ready`` holds for it (polled, with a deadline)."""
    deadline = time.monotonic() + within
    while True:
        deliveries = await api(client, "GET", f"/api/v1/webhooks/{subscription_id}/deliveries")
        done = [d for d in deliveries if ready(d)]
        if done:
            path = f"/api/v1/webhooks/{subscription_id}/deliveries/{done[0]['id']}"
            return dict(await api(client, "GET", path))
        assert time.monotonic() < deadline, f"no delivery got there: {deliveries}"
        await asyncio.sleep(0.1)


async def settled(client: Any, subscription_id: str) -> dict[str, Any]:
    return await first_delivery(client, subscription_id, lambda d: d["status"] != "pending")


def assert_reveals_nothing(text: str | None, *secrets: object) -> None:
    assert text is not None
    for secret in ("127.0.0.1", "Errno", "Connect", "ssl", *map(str, secrets)):
        assert secret not in text, f"{secret!r} in {text!r}"


TARGETS = {
    "loopback": "http://127.0.0.1:{port}/hook",
    "localhost": "http://localhost:{port}/hook",
    "hex_ipv4": "http://0x7f000001:{port}/hook",
    "integer_ipv4": "http://2130706433:{port}/hook",
    "short_ipv4": "http://127.1:{port}/hook",
    "octal_ipv4": "http://0177.0.0.1:{port}/hook",
    "ipv6_loopback": "http://[::1]:{port}/hook",
    "ipv4_mapped_ipv6": "http://[::ffff:127.0.0.1]:{port}/hook",
    "metadata_address": "http://169.254.169.254/latest/meta-data/",
    "metadata_name": "http://metadata.google.internal/computeMetadata/v1/",
    "private": "http://10.0.0.1/hook",
    "cgnat": "http://100.64.0.1/hook",
    "multicast": "http://224.0.0.1/hook",
    "unspecified": "http://0.0.0.0:{port}/hook",
    "own_api": "http://127.0.0.1:{own}/api/v1/campaigns",
    "credentials": f"http://user:pw@{PUBLIC}/hook",
}


@pytest.mark.parametrize("target", sorted(TARGETS))
async def test_subscriptions_to_inside_addresses_are_refused(
    make_service: MakeService, make_receiver: MakeReceiver, target: str
) -> None:
    """Attack: subscribe a webhook to a loopback, private, link-local, metadata, CGNAT, multicast
    address (in any spelling), to the service's own API, or with credentials in the URL.
    Promise: 422 webhook_url_not_allowed, nothing stored; a PATCH to it is refused the same way."""
    receiver = await make_receiver()
    client = await make_service()
    url = TARGETS[target].format(port=receiver.port, own=client.server.port)
    response = await subscribe(client, url)
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "webhook_url_not_allowed"
    assert error["details"]["field"] == "url"
    assert await api(client, "GET", "/api/v1/webhooks") == []

    # A subscription to a public name cannot be moved inside either.
    hosts_ok = await subscribe(client, f"http://{PUBLIC}/hook")
    assert hosts_ok.status == 201
    moved = await client.patch(
        f"/api/v1/webhooks/{(await hosts_ok.json())['id']}", json={"url": url}, headers=AUTH
    )
    assert moved.status == 422
    assert (await moved.json())["error"]["code"] == "webhook_url_not_allowed"
    [kept] = await api(client, "GET", "/api/v1/webhooks")
    assert kept["url"] == f"http://{PUBLIC}/hook"
    assert receiver.requests == []


async def test_a_name_that_later_resolves_to_the_loopback_is_not_delivered_to(
    make_service: MakeService, make_receiver: MakeReceiver
) -> None:
    """Attack: register a name that resolves to a public address, then point it at the loopback
    (DNS rebinding). Promise: the address connected to is the one checked at delivery; the
    receiver on the loopback gets nothing and the delivery fails with a message that names no
    address or port."""
    receiver = await make_receiver()
    hosts = Hosts({"hooks.example.com": [PUBLIC]})
    client = await make_service(hosts=hosts)
    response = await subscribe(client, f"http://hooks.example.com:{receiver.port}/hook")
    assert response.status == 201, await response.text()
    subscription_id = (await response.json())["id"]

    hosts.table["hooks.example.com"] = ["127.0.0.1"]
    await one_call(client)
    delivery = await settled(client, subscription_id)
    assert receiver.requests == []
    assert delivery["status"] == "failed"
    assert delivery["last_error"] == REFUSED
    for attempt in delivery["attempt_log"]:
        assert_reveals_nothing(attempt["error"], receiver.port)
    # A refusal is final: it is not retried against the same target for a day.
    assert delivery["attempts"] == 1


async def test_stored_targets_are_checked_again_at_delivery(
    make_service: MakeService, make_receiver: MakeReceiver
) -> None:
    """Attack: subscriptions stored before the registration check (or written to the database
    directly) aim at the loopback or carry credentials. Promise: delivery checks them again; the
    receiver gets nothing, not even an Authorization header built from the URL."""
    receiver = await make_receiver()
    client = await make_service()
    targets = {
        "wh_loopback": f"http://127.0.0.1:{receiver.port}/hook",
        "wh_hexloop": f"http://0x7f000001:{receiver.port}/hook",
        "wh_mapped": f"http://[::ffff:127.0.0.1]:{receiver.port}/hook",
    }
    async with client.app[SESSIONMAKER].begin() as session:
        for subscription_id, url in targets.items():
            session.add(
                WebhookSubscription(
                    id=subscription_id,
                    url=url,
                    events=["call.completed"],
                    secret=SECRET,
                    enabled=True,
                    created_at=utcnow(),
                )
            )
    await one_call(client)
    for subscription_id in targets:
        delivery = await settled(client, subscription_id)
        assert (delivery["status"], delivery["last_error"]) == ("failed", REFUSED), delivery
        assert_reveals_nothing(delivery["last_error"], receiver.port)
    assert receiver.requests == []


async def test_credentials_in_a_stored_url_are_never_sent(
    make_service: MakeService, make_receiver: MakeReceiver
) -> None:
    """Attack: a stored URL with user:pw@ (the old code turned it into an Authorization header).
    Promise: refused at delivery even where private targets are allowed; nothing is sent."""
    receiver = await make_receiver()
    client = await make_service(allow_private=True)
    async with client.app[SESSIONMAKER].begin() as session:
        session.add(
            WebhookSubscription(
                id="wh_userinfo",
                url=f"http://user:pw@127.0.0.1:{receiver.port}/hook",
                events=["call.completed"],
                secret=SECRET,
                enabled=True,
                created_at=utcnow(),
            )
        )
    await one_call(client)
    delivery = await settled(client, "wh_userinfo")
    assert delivery["status"] == "failed"
    assert delivery["last_error"] == "refused: credentials in URL"
    assert receiver.requests == []


async def test_redirects_are_not_followed(
    make_service: MakeService, make_receiver: MakeReceiver
) -> None:
    """Attack: a receiver answers 307 to an address the service must not reach.
    Promise: the redirect is not followed; the try counts as failed and its target gets nothing."""
    inside = await make_receiver()
    receiver = await make_receiver()
    receiver.redirect_to = f"http://127.0.0.1:{inside.port}/stolen"
    client = await make_service(allow_private=True)
    response = await subscribe(client, f"http://127.0.0.1:{receiver.port}/redirect")
    assert response.status == 201, await response.text()
    subscription_id = (await response.json())["id"]
    await one_call(client)

    delivery = await first_delivery(client, subscription_id, lambda d: d["attempts"] > 0)
    assert delivery["status"] != "delivered"
    first = delivery["attempt_log"][0]
    assert (first["status_code"], first["error"]) == (307, "HTTP 307: redirect not followed")
    assert [(m, p) for m, p, _, _ in receiver.requests][:1] == [("POST", "/redirect")]
    assert inside.requests == []


async def test_the_operator_setting_lets_a_closed_network_deliver_to_private_receivers(
    make_service: MakeService, make_receiver: MakeReceiver
) -> None:
    """Promise: with CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE_TARGETS a receiver on a private address (the
    test's own, on the loopback, reached by name through the same resolver) gets its signed
    events; metadata and link-local addresses and the service's own API stay refused."""
    receiver = await make_receiver()
    hosts = Hosts({"hooks.corp.example": ["127.0.0.1"], "self.corp.example": ["127.0.0.1"]})
    client = await make_service(allow_private=True, hosts=hosts)
    own = client.server.port
    for url in (
        f"http://127.0.0.1:{own}/api/v1/campaigns",
        f"http://localhost:{own}/api/v1/campaigns",
        f"http://self.corp.example:{own}/api/v1/campaigns",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://224.0.0.1/hook",
    ):
        refused = await subscribe(client, url)
        assert refused.status == 422, url
        assert (await refused.json())["error"]["code"] == "webhook_url_not_allowed"

    response = await subscribe(client, f"http://hooks.corp.example:{receiver.port}/hook")
    assert response.status == 201, await response.text()
    subscription_id = (await response.json())["id"]
    await one_call(client)
    delivery = await settled(client, subscription_id)
    assert delivery["status"] == "delivered", delivery
    [(method, path, headers, body)] = receiver.requests
    assert (method, path) == ("POST", "/hook")
    assert verify(SECRET, headers["Callbridge-Signature"], body)
    assert json.loads(body)["type"] == "call.completed"
    assert "Authorization" not in headers


async def test_names_are_judged_by_every_address_they_resolve_to(make_service: MakeService) -> None:
    """Attack: a name with a public and a private address (the connector may pick either), and
    a name that does not resolve (yet). Promise: both are refused at registration with a message
    saying why, and a name whose every address is public is accepted."""
    hosts = Hosts({"mixed.example.com": [PUBLIC, "10.1.2.3"], "ok.example.com": [PUBLIC]})
    client = await make_service(hosts=hosts)
    mixed = await subscribe(client, "https://mixed.example.com/hook")
    assert mixed.status == 422
    assert "resolves to a private address" in (await mixed.json())["error"]["message"]
    missing = await subscribe(client, "https://nowhere.example.com/hook")
    assert missing.status == 422
    assert "does not resolve" in (await missing.json())["error"]["message"]
    assert (await subscribe(client, "https://ok.example.com/hook")).status == 201
