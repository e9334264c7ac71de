"""An Idempotency-Key belongs to the API key that used it and to the request it came with
(issue 11, point 4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.service import Service

BODY = {"to": "+1 212 555 0142", "agent_id": "agent_idem", "dynamic_variables": {"name": "Ada"}}


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[Service]:
    svc = Service(database_url, tmp_path).start()
    yield svc
    svc.stop()


def call(
    service: Service, body: dict[str, Any], idempotency_key: str, key: str | None = None
) -> requests.Response:
    headers = {"Idempotency-Key": idempotency_key}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return service.api("POST", "/api/v1/calls", json=body, headers=headers)


def contacts_of(service: Service, campaign_id: str) -> list[dict[str, Any]]:
    response = service.api("GET", f"/api/v1/campaigns/{campaign_id}/contacts")
    assert response.status_code == 200, response.text
    return list(response.json())


def test_a_key_reused_with_another_request_is_refused(service: Service) -> None:
    """Attack: the Idempotency-Key of a queued call is sent again with another ``to`` (a
    neighbour's number, or 911) or other variables. Promise: 422 ``idempotency_key_reused``,
    never the first call and never a second one; the same request again (its fields in any
    order) still answers the first call."""
    first = call(service, BODY, "order-4711")
    assert first.status_code == 201, first.text
    call_id, campaign_id = first.json()["id"], first.json()["campaign_id"]
    for other in (
        {**BODY, "to": "911"},
        {**BODY, "to": "+1 212 555 0143"},
        {**BODY, "dynamic_variables": {"name": "Bob"}},
        {k: v for k, v in BODY.items() if k != "dynamic_variables"},
    ):
        reused = call(service, other, "order-4711")
        assert reused.status_code == 422, reused.text
        error = reused.json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert call_id not in reused.text
    reordered = dict(reversed(list(BODY.items())))
    again = call(service, reordered, "order-4711")
    assert (again.status_code, again.json()["id"]) == (200, call_id)
    assert [c["id"] for c in contacts_of(service, campaign_id)] == [call_id]


def test_another_api_key_has_a_key_space_of_its_own(service: Service) -> None:
    """Attack: a second API key sends the first key's Idempotency-Key (same body, or another) to
    read the first key's call. Promise: it never gets that call; its request is its own (a new
    call), and its own repeat answers its own call."""
    made = service.api("POST", "/api/v1/api-keys", json={"name": "partner", "scope": "write"})
    assert made.status_code == 201, made.text
    partner = made.json()["key"]
    mine = call(service, BODY, "shared-key")
    assert mine.status_code == 201
    theirs = call(service, BODY, "shared-key", key=partner)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != mine.json()["id"]
    repeat = call(service, BODY, "shared-key", key=partner)
    assert (repeat.status_code, repeat.json()["id"]) == (200, theirs.json()["id"])
    other_body = call(service, {**BODY, "to": "+1 212 555 0150"}, "other-key", key=partner)
    assert other_body.status_code == 201
    stolen = call(service, {**BODY, "to": "+1 212 555 0150"}, "other-key")
    assert stolen.status_code == 201 and stolen.json()["id"] != other_body.json()["id"]
    assert call(service, BODY, "shared-key").json()["id"] == mine.json()["id"]
    campaign_id = mine.json()["campaign_id"]
    assert len(contacts_of(service, campaign_id)) == 4
