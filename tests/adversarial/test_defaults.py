"""Issue 11, point 9: defaults that are fine on a laptop must not be what a server runs with.

Sandbox mode signs with fixed secrets that anyone can read in the source. Listening beyond the
loopback, the service must use secrets of its own installation (kept in the database, the same
after a restart and for every process of the installation), and the sandbox's records (full
numbers, dynamic variables) must need an API key. The SQLite database holds every number called:
its files are for their owner's eyes only.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from urllib.parse import urlencode

import requests
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from bridge.migrate import upgrade_to_head
from bridge.settings import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_ELEVENLABS_API_KEY,
    SANDBOX_ELEVENLABS_WEBHOOK_SECRET,
)
from campaigns.db import make_engine
from tests.campaign_flow import (
    contacts_csv,
    create_campaign,
    numbers,
    start,
    upload,
    wait_completed,
)
from tests.cluster import SandboxProcess
from tests.service import API_KEY, Service

PUBLIC_SECRETS = {SANDBOX_AUTH_TOKEN, SANDBOX_ELEVENLABS_API_KEY, SANDBOX_ELEVENLABS_WEBHOOK_SECRET}
INSPECTION_ROUTES = [
    "/sandbox/calls",
    "/sandbox/sent",
    "/sandbox/elevenlabs/conversations",
    "/sandbox/elevenlabs/sent",
]


def installation_secrets(database_url: str) -> dict[str, str]:
    async def read() -> dict[str, str]:
        engine = make_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT name, value FROM installation_secrets"))
                return {name: value for name, value in rows}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def exposed_service(database_url: str, tmp_path: Path, **env: str) -> Service:
    service = Service(database_url, tmp_path, CALLBRIDGE_HOST="0.0.0.0", **env)
    service.env["CALLBRIDGE_PUBLIC_URL"] = service.url
    return service


def run_campaign(service: Service, phones: list[str]) -> str:
    campaign_id = create_campaign(service)
    upload(service, campaign_id, contacts_csv(phones))
    start(service, campaign_id)
    done = wait_completed(service, campaign_id)
    assert done["counts"]["pending"] == 0
    return campaign_id


def test_sandbox_beyond_the_loopback_uses_installation_secrets_and_guards_its_records(
    database_url: str, tmp_path: Path
) -> None:
    """Attack: on a sandbox-mode service listening on 0.0.0.0, sign a status callback and place a
    call with the published sandbox auth token, and read every called number from /sandbox.
    Promise: the service signs and checks with secrets generated for this installation (stored
    in its database, the same after a restart); the public token is refused (403 on the webhook,
    401 at the carrier); /sandbox inspection without an API key is 401."""
    service = exposed_service(database_url, tmp_path).start()
    try:
        campaign_id = run_campaign(service, numbers(6))
        for route in INSPECTION_ROUTES:
            refused = requests.get(f"{service.url}{route}", timeout=10)
            assert refused.status_code == 401, (route, refused.text)
            assert refused.json()["error"]["code"] == "unauthorized"
            assert "+1" not in refused.text
            wrong = requests.get(
                f"{service.url}{route}", headers={"Authorization": "Bearer nope"}, timeout=10
            )
            assert wrong.status_code == 401
            assert service.api("GET", route).status_code == 200
        calls = service.api("GET", "/sandbox/calls").json()
        assert len(calls) >= 6

        # The carrier's Twilio API refuses the published token, takes the installation's.
        api = f"{service.url}/sandbox/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Calls.json"
        public = requests.get(api, auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN), timeout=10)
        assert public.status_code == 401
        stored = installation_secrets(database_url)
        assert set(stored) >= {"sandbox_twilio_auth_token", "sandbox_elevenlabs_api_key"}
        assert not PUBLIC_SECRETS & set(stored.values())
        token = stored["sandbox_twilio_auth_token"]

        assert requests.get(api, auth=(SANDBOX_ACCOUNT_SID, token), timeout=10).status_code == 200

        # A callback signed with the published token is forged; with the installation's it is not.
        attempt = service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json()[0]
        path = f"/webhooks/twilio/status?{urlencode({'attempt_id': attempt['id']})}"
        params = {
            "CallSid": attempt["provider_call_id"],
            "AccountSid": SANDBOX_ACCOUNT_SID,
            "CallStatus": "completed",
            "SequenceNumber": "99",
        }
        for signing_token, expected in ((SANDBOX_AUTH_TOKEN, 403), (token, 204)):
            signature = RequestValidator(signing_token).compute_signature(
                f"{service.url}{path}", params
            )
            answer = requests.post(
                f"{service.url}{path}",
                data=params,
                headers={"X-Twilio-Signature": signature},
                timeout=10,
            )
            assert answer.status_code == expected, (signing_token == token, answer.text)
    finally:
        service.stop()

    # A restart keeps the installation's secrets, and calls still go through with them.
    again = exposed_service(database_url, tmp_path).start()
    try:
        assert installation_secrets(database_url) == stored
        run_campaign(again, numbers(3, first_area=1))
    finally:
        again.stop()


def test_a_separate_sandbox_agrees_with_an_exposed_node(database_url: str, tmp_path: Path) -> None:
    """Attack: in the several-node topology, `callbridge sandbox` runs on its own, started before
    a node listening on 0.0.0.0 creates the installation's secrets; later the carrier itself
    listens on 0.0.0.0 and is asked with the published token and without a key.
    Promise: the carrier adopts the installation's token (calls go through, callbacks verify),
    the public token is refused, and its records need a key."""
    carrier = SandboxProcess(database_url, tmp_path).start()
    service = exposed_service(database_url, tmp_path, CALLBRIDGE_SANDBOX_URL=carrier.url)
    try:
        service.start()
        run_campaign(service, numbers(4))
        assert len(carrier.calls()) >= 4
    finally:
        service.stop()
        carrier.stop()

    exposed = SandboxProcess(database_url, tmp_path, host="0.0.0.0", CALLBRIDGE_API_KEYS=API_KEY)
    exposed.start()
    try:
        api = f"{exposed.url}/sandbox/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Calls.json"
        public = requests.get(api, auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN), timeout=10)
        assert public.status_code == 401
        assert requests.get(f"{exposed.url}/sandbox/calls", timeout=10).status_code == 401
        token = installation_secrets(database_url)["sandbox_twilio_auth_token"]
        assert requests.get(api, auth=(SANDBOX_ACCOUNT_SID, token), timeout=10).status_code == 200
        listed = requests.get(
            f"{exposed.url}/sandbox/calls",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        assert listed.status_code == 200 and len(listed.json()) >= 4
    finally:
        exposed.stop()


def test_the_sqlite_database_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """Attack: another account on the machine reads the database (every number, every
    transcript) under a usual umask of 022. Promise: the SQLite file and its -wal and -shm files
    are created with mode 0600."""
    path = tmp_path / "private.db"
    previous = os.umask(0o022)
    try:

        async def create() -> None:
            engine = make_engine(f"sqlite:///{path}")
            try:
                await upgrade_to_head(engine)
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT count(*) FROM campaigns"))
                    modes = {
                        suffix: stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
                        for suffix in ("", "-wal", "-shm")
                    }
            finally:
                await engine.dispose()
            assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}, {
                k: oct(v) for k, v in modes.items()
            }

        asyncio.run(create())
    finally:
        os.umask(previous)
