"""Issue 11, point 6: input that used to give a 500 gets a 4xx with a clear JSON error.

Each attack is sent to the running application; the promise is the house rule "a 500 caused by
input is a bug": the answer is a 4xx ``{"error": {"code", "message"}}`` and nothing is stored.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.app_keys import SESSIONMAKER
from campaigns.models import Campaign, Contact

KEY = "bad-input-key-" + "0" * 16
AUTH = {"Authorization": f"Bearer {KEY}"}
WEBHOOK_SECRET = "wsec_bad_input_0123456789"


@pytest.fixture
async def client(app_client: Any) -> Any:
    return await app_client(
        api_keys=(KEY,),
        elevenlabs_webhook_secret=WEBHOOK_SECRET,
    )


async def refused(response: Any, *statuses: int) -> dict[str, Any]:
    """The JSON error of a 4xx answer (one of ``statuses``)."""
    text = await response.text()
    assert response.status in statuses, f"{response.status}: {text[:300]}"
    error = json.loads(text)["error"]
    assert error["code"] and error["message"]
    return error


async def rows(client: Any, model: Any) -> int:
    async with client.app[SESSIONMAKER]() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def post_json(client: Any, path: str, raw: bytes) -> Any:
    headers = {**AUTH, "Content-Type": "application/json"}
    return await client.post(path, data=raw, headers=headers)


async def test_elevenlabs_signature_with_a_5000_digit_timestamp_is_refused(client: Any) -> None:
    """Attack: `ElevenLabs-Signature: t=<5000 digits>,v0=…` with no credential at all.
    Promise: 401 bad_signature (int() of 5000 digits raised before the HMAC was checked)."""
    header = "t=" + "9" * 5000 + ",v0=" + "0" * 64
    response = await client.post(
        "/webhooks/elevenlabs", data=b"{}", headers={"ElevenLabs-Signature": header}
    )
    assert (await refused(response, 401))["code"] == "bad_signature"


async def test_elevenlabs_signature_with_a_non_ascii_digit_is_refused(client: Any) -> None:
    """Attack: `ElevenLabs-Signature: t=²,v0=…` ("²".isdigit() is true, int() refuses it).
    Promise: 401 bad_signature."""
    response = await client.post(
        "/webhooks/elevenlabs",
        data=b"{}",
        headers={"ElevenLabs-Signature": "t=\u00b2,v0=" + "0" * 64},
    )
    assert (await refused(response, 401))["code"] == "bad_signature"


async def test_json_nested_100000_deep_is_refused(client: Any) -> None:
    """Attack: a JSON body nested 100,000 levels deep (RecursionError in the parser).
    Promise: 400 bad_json naming the depth; no campaign created."""
    deep = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    error = await refused(await post_json(client, "/api/v1/campaigns", deep), 400)
    assert error["code"] == "bad_json" and "nested" in error["message"]
    # Just under the parser's recursion limit, the schema check would recurse instead.
    shallow_enough_to_parse = b'{"name": ' + b"[" * 900 + b"]" * 900 + b"}"
    error = await refused(
        await post_json(client, "/api/v1/campaigns", shallow_enough_to_parse), 400
    )
    assert "nested" in error["message"]
    assert await rows(client, Campaign) == 0


async def test_lone_surrogate_in_a_name_is_refused(client: Any) -> None:
    r"""Attack: `{"name": "\ud800"}`: valid JSON, but no UTF-8 text (the database cannot
    encode it). Promise: 400 bad_json, no campaign; the same escape in a contact's dynamic
    variables is refused too."""
    error = await refused(await post_json(client, "/api/v1/campaigns", b'{"name": "\\ud800"}'), 400)
    assert error["code"] == "bad_json" and "surrogate" in error["message"]
    assert await rows(client, Campaign) == 0
    created = await post_json(client, "/api/v1/campaigns", b'{"name": "ok"}')
    campaign_id = (await created.json())["id"]
    contacts = (
        b'{"contacts": [{"phone_number": "+12125550100", "dynamic_variables": {"\\udfff": "x"}}]}'
    )
    response = await post_json(client, f"/api/v1/campaigns/{campaign_id}/contacts", contacts)
    assert (await refused(response, 400))["code"] == "bad_json"
    assert await rows(client, Contact) == 0


async def test_5000_digit_integer_is_refused(client: Any) -> None:
    """Attack: an integer of 5,000 digits (Python's int max str digits ValueError), and one of
    25 digits that parses but fits no column. Promise: 400 bad_json, nothing stored."""
    for digits in (5000, 25):
        body = b'{"name": "x", "max_attempts": ' + b"9" * digits + b"}"
        error = await refused(await post_json(client, "/api/v1/campaigns", body), 400)
        assert error["code"] == "bad_json" and "64 bits" in error["message"]
    assert await rows(client, Campaign) == 0


async def test_naive_call_at_at_the_end_of_time_is_refused(client: Any) -> None:
    """Attack: `POST /api/v1/calls` with a naive `call_at` of 9999-12-31T23:59:59 (read in the
    recipient's zone, it overflows datetime when converted to UTC). Promise: 422
    invalid_call_at, no contact stored; the same in a CSV's call_at column rejects the row."""
    body = {"to": "+12125550100", "call_at": "9999-12-31T23:59:59"}
    response = await client.post("/api/v1/calls", json=body, headers=AUTH)
    error = await refused(response, 422)
    assert error["code"] == "invalid_call_at" and "out of range" in error["message"]
    assert await rows(client, Contact) == 0
    created = await post_json(client, "/api/v1/campaigns", b'{"name": "reminders"}')
    campaign_id = (await created.json())["id"]
    csv_body = b"phone_number,call_at\n+12125550100,9999-12-31T23:59:59\n+12125550101,\n"
    imported = await client.post(
        f"/api/v1/campaigns/{campaign_id}/contacts",
        data=csv_body,
        headers={**AUTH, "Content-Type": "text/csv"},
    )
    report = await imported.json()
    assert imported.status == 200, report
    assert report["accepted"] == 1
    assert report["errors"] == [{"row": 2, "value": "+12125550100", "reason": "invalid_call_at"}]


async def test_campaign_start_at_out_of_range_is_refused(client: Any) -> None:
    """Attack: a campaign `start_at` at the very end of datetime's range with a negative
    offset. Promise: 422 invalid_field naming start_at, no campaign."""
    body = {"name": "late", "start_at": "9999-12-31T23:59:59-05:00"}
    response = await client.post("/api/v1/campaigns", json=body, headers=AUTH)
    error = await refused(response, 422)
    assert error["code"] == "invalid_field" and "start_at" in error["message"]
    assert await rows(client, Campaign) == 0


async def test_batch_scheduled_time_far_in_the_future_is_refused(client: Any) -> None:
    """Attack: batch calling with `scheduled_time_unix` 99999999999999 (year 3170843; datetime
    cannot hold it). Promise: 422 invalid_field naming the field (in ElevenLabs' error shape, as
    on every /v1/convai route); no batch stored."""
    body = {
        "call_name": "far",
        "agent_id": "agent_far",
        "recipients": [{"phone_number": "+12125550100"}],
        "scheduled_time_unix": 99_999_999_999_999,
    }
    response = await client.post(
        "/v1/convai/batch-calling/submit", json=body, headers={"xi-api-key": KEY, **AUTH}
    )
    # ElevenLabs' validation error shape on its routes: the item names the field.
    text = await response.text()
    assert response.status == 422, text
    [item] = json.loads(text)["detail"]
    assert item["loc"] == ["body", "scheduled_time_unix"] and item["type"] == "invalid_field"
    assert "scheduled_time_unix" in item["msg"]
    assert await rows(client, Campaign) == 0
    # A time in range still schedules the batch.
    body["scheduled_time_unix"] = int(time.time()) + 3600
    response = await client.post(
        "/v1/convai/batch-calling/submit", json=body, headers={"xi-api-key": KEY, **AUTH}
    )
    assert response.status == 200, await response.text()
