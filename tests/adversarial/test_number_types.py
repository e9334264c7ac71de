"""Issue 11, point 10: what a number may be.

A campaign calls fixed lines, mobiles, toll-free and VoIP numbers unless it chooses otherwise;
personal, shared-cost, UAN, pager and voicemail numbers are refused with their type, premium-rate
numbers always. Service codes and extensions are refused, never turned into another number or
dropped. A NUL byte in any value is refused the same way on SQLite and PostgreSQL. The same rules
hold for every way a number comes in: CSV and JSON contacts, single calls, batch calling.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import recurring
from campaigns.intake.rows import parse_batches
from campaigns.lifecycle import CampaignSpec, create_campaign, start_now
from campaigns.models import Contact
from campaigns.phones import PhoneRejected, normalize
from tests.campaign_flow import create_campaign as create_via_api
from tests.campaign_flow import upload
from tests.service import Service

PERSONAL = "+44 7012 345678"  # UK 070: forwards wherever its owner chose, at a premium
SHARED_COST = "+49 1371 234567"  # German 0137: shared-cost (televoting) lines
FIXED = "+1 415 555 0100"


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[Service]:
    svc = Service(database_url, tmp_path).start()
    yield svc
    svc.stop()


def errors_of(report: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    return [(e["row"], e["reason"], e.get("number_type")) for e in report["errors"]]


def stored_numbers(service: Service, campaign_id: str) -> list[str]:
    response = service.api("GET", f"/api/v1/campaigns/{campaign_id}/contacts?per_page=1000")
    assert response.status_code == 200, response.text
    return sorted(contact["phone_number"] for contact in response.json())


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("*67 415 555 0100", "DE", "service_code"),  # was +49674155550100
        ("*67 415 555 0100", "US", "service_code"),
        ("#31#4155550100", "GB", "service_code"),
        ("*31#+14155550100", "US", "service_code"),
        ("+1 415 555 0100 *", "US", "service_code"),
        ("+1 415 555 0100;ext=1", "US", "extension"),  # the extension was dropped
        ("tel:+14155550100;ext=1", "US", "extension"),
        ("415 555 0100 x123", "US", "extension"),
        ("415-555-0100 ext 12", "US", "extension"),
        ("415 555 0100#123", "US", "extension"),
        ("+1 415 555\x000100", "US", "nul_byte"),
        (PERSONAL, "US", "number_type_not_allowed"),
        (SHARED_COST, "US", "number_type_not_allowed"),
        ("+44 76 0012 3456", "US", "number_type_not_allowed"),  # pager
        ("+44 55 1234 5678", "US", "number_type_not_allowed"),  # UAN
        ("+1 900 200 1234", "US", "premium_rate"),
    ],
)
def test_a_number_is_called_as_written_or_refused_with_its_reason(
    raw: str, region: str, reason: str
) -> None:
    """Attack: a service code or an extension rewritten into another number, or a costly type.
    Promise: refused with a reason of its own; the number is never changed into another."""
    with pytest.raises(PhoneRejected) as caught:
        normalize(raw, region)
    assert caught.value.reason == reason


def test_personal_and_shared_cost_numbers_only_when_the_campaign_allows_them(
    service: Service,
) -> None:
    """Attack: personal (+44 70) and shared-cost (+49 137) numbers were called like any other.
    Promise: refused by default with reason number_type_not_allowed and the type; a campaign
    that lists the type in allowed_number_types (create or PATCH) accepts it, as CSV or JSON."""
    rows = f"phone_number\n{PERSONAL}\n{SHARED_COST}\n{FIXED}\n".encode()
    default = create_via_api(service, name="default types")
    shown = service.api("GET", f"/api/v1/campaigns/{default}").json()["allowed_number_types"]
    assert shown == ["fixed_line", "fixed_line_or_mobile", "mobile", "toll_free", "voip"]
    report = upload(service, default, rows)
    assert (report["accepted"], report["rejected"]) == (1, 2)
    assert errors_of(report) == [
        (2, "number_type_not_allowed", "personal_number"),
        (3, "number_type_not_allowed", "shared_cost"),
    ]
    as_json = service.api(
        "POST",
        f"/api/v1/campaigns/{default}/contacts",
        json={"contacts": [{"phone_number": PERSONAL}, {"phone_number": SHARED_COST}]},
    ).json()
    assert errors_of(as_json) == [
        (1, "number_type_not_allowed", "personal_number"),
        (2, "number_type_not_allowed", "shared_cost"),
    ]
    assert stored_numbers(service, default) == ["+14155550100"]

    chosen = ["fixed_line_or_mobile", "personal_number", "shared_cost"]
    allowing = create_via_api(service, name="wider", allowed_number_types=chosen)
    report = upload(service, allowing, rows)
    assert (report["accepted"], report["rejected"]) == (3, 0)
    assert stored_numbers(service, allowing) == ["+14155550100", "+447012345678", "+491371234567"]

    patched = service.api(
        "PATCH", f"/api/v1/campaigns/{default}", json={"allowed_number_types": chosen}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["allowed_number_types"] == chosen
    report = upload(service, default, rows)
    assert (report["accepted"], errors_of(report)) == (2, [(4, "duplicate", None)])

    # Premium-rate numbers are never callable, and unknown names are refused.
    for bad in (["premium_rate"], ["mobile", "satellite"], []):
        refused = service.api(
            "POST", "/api/v1/campaigns", json={"name": "x", "allowed_number_types": bad}
        )
        assert refused.status_code in (400, 422), refused.text


def test_service_codes_extensions_and_nul_bytes_are_refused_in_every_column(
    service: Service,
) -> None:
    """Attack: with region DE `*67 415 555 0100` became +49674155550100, `;ext=1` was dropped,
    and a NUL in any CSV value broke PostgreSQL. Promise: reasons service_code, extension and
    nul_byte (phone, id or any variable), the same report on SQLite and PostgreSQL, and nothing
    rewritten is stored."""
    german = create_via_api(service, name="de", default_region="DE")
    text = (
        "phone_number,id,first_name\n"
        "*67 415 555 0100,a,Ann\n"
        "#31#030 12345678,b,Bo\n"
        "+1 415 555 0100;ext=1,c,Cy\n"
        "+1 415 555 0101 x123,d,Di\n"
        "+1 415 555 0102#123,e,Ed\n"
        "+1 415 555\x000103,f,Fay\n"
        "+1 415 555 0104,g,Gu\x00s\n"
        "+1 415 555 0105,h\x00,Hal\n"
        "+1 415 555 0106,i,Ida\n"
    )
    report = upload(service, german, text.encode())
    assert report == {
        "rows": 9,
        "accepted": 1,
        "rejected": 8,
        "errors": [
            {"row": 2, "value": "*67 415 555 0100", "reason": "service_code"},
            {"row": 3, "value": "#31#030 12345678", "reason": "service_code"},
            {"row": 4, "value": "+1 415 555 0100;ext=1", "reason": "extension"},
            {"row": 5, "value": "+1 415 555 0101 x123", "reason": "extension"},
            {"row": 6, "value": "+1 415 555 0102#123", "reason": "extension"},
            {"row": 7, "value": "+1 415 5550103", "reason": "nul_byte"},
            {"row": 8, "value": "+1 415 555 0104", "reason": "nul_byte"},
            {"row": 9, "value": "+1 415 555 0105", "reason": "nul_byte"},
        ],
    }
    assert stored_numbers(service, german) == ["+14155550106"]

    # A NUL in a column name refuses the file; in JSON contacts, the item.
    header = service.api(
        "POST",
        f"/api/v1/campaigns/{german}/contacts",
        data=b"phone_number,na\x00me\n+1 415 555 0107,x\n",
        headers={"Content-Type": "text/csv"},
    )
    assert header.status_code == 422 and header.json()["error"]["code"] == "csv_refused"
    # In JSON a NUL refuses the whole request; service codes and extensions, their item.
    nul = service.api(
        "POST",
        f"/api/v1/campaigns/{german}/contacts",
        json={
            "contacts": [
                {"phone_number": "+1 415 555 0107"},
                {"phone_number": "+1 415 555 0108", "dynamic_variables": {"name": "A\u0000"}},
            ]
        },
    )
    assert nul.status_code == 422 and nul.json()["error"]["code"] == "invalid_body"
    as_json = service.api(
        "POST",
        f"/api/v1/campaigns/{german}/contacts",
        json={
            "contacts": [
                {"phone_number": "*67 415 555 0110"},
                {"phone_number": "+1 415 555 0111 ext 9"},
            ]
        },
    )
    assert as_json.status_code == 200, as_json.text
    assert errors_of(as_json.json()) == [(1, "service_code", None), (2, "extension", None)]
    assert stored_numbers(service, german) == ["+14155550106"]


def test_single_calls_and_batch_recipients_follow_the_same_rules(service: Service) -> None:
    """Attack: the same numbers through POST /api/v1/calls, batch calling and outbound-call.
    Promise: the same refusals (422 with the reason and type), nothing queued, and a campaign
    (or batch) that allows the type calls it."""
    german = create_via_api(service, name="de", default_region="DE")
    cases = [
        (PERSONAL, None, {"reason": "number_type_not_allowed", "number_type": "personal_number"}),
        (SHARED_COST, None, {"reason": "number_type_not_allowed", "number_type": "shared_cost"}),
        ("*67 415 555 0100", german, {"reason": "service_code"}),
        ("+1 415 555 0100;ext=1", None, {"reason": "extension"}),
        ("415 555 0100 x123", None, {"reason": "extension"}),
    ]
    for to, campaign_id, details in cases:
        body = {"to": to, "agent_id": "agent_x", "campaign_id": campaign_id}
        refused = service.api("POST", "/api/v1/calls", json=body)
        assert refused.status_code == 422, (to, refused.text)
        assert refused.json()["error"]["details"] == details, to
    # A NUL anywhere in a JSON body refuses the whole request, before any number is read.
    nul = service.api("POST", "/api/v1/calls", json={"to": "+1 415 555\u00000100"})
    assert nul.status_code == 422 and nul.json()["error"]["code"] == "invalid_body"
    assert stored_numbers(service, german) == []
    allowing = create_via_api(service, name="p", allowed_number_types=["personal_number"])
    queued = service.api("POST", "/api/v1/calls", json={"to": PERSONAL, "campaign_id": allowing})
    assert queued.status_code == 201, queued.text
    assert queued.json()["phone_number"] == "+447012345678"

    outbound = service.api(
        "POST",
        "/v1/convai/twilio/outbound-call",
        json={
            "agent_id": "agent_x",
            "agent_phone_number_id": "+15005550006",
            "to_number": PERSONAL,
        },
    )
    assert outbound.status_code == 422, outbound.text
    # ElevenLabs' validation error shape on its routes, the number's type in the item's ctx.
    assert outbound.json()["detail"][0]["ctx"]["number_type"] == "personal_number"

    recipients = [
        {"phone_number": FIXED},
        {"phone_number": PERSONAL},
        {"phone_number": SHARED_COST},
        {"phone_number": "*67 415 555 0101"},
        {"phone_number": "+1 415 555 0102;ext=1"},
        {"phone_number": "+1 415 555 0103 x123"},
    ]
    submit = {"call_name": "b", "agent_id": "agent_x", "recipients": recipients}
    batches_before = service.api("GET", "/api/v1/campaigns?per_page=1000").json()
    refused = service.api("POST", "/v1/convai/batch-calling/submit", json=submit)
    assert refused.status_code == 422, refused.text
    assert [
        (d["recipient"], d["reason"], d.get("number_type")) for d in refused.json()["detail"]
    ] == [
        (1, "number_type_not_allowed", "personal_number"),
        (2, "number_type_not_allowed", "shared_cost"),
        (3, "service_code", None),
        (4, "extension", None),
        (5, "extension", None),
    ]
    assert service.api("GET", "/api/v1/campaigns?per_page=1000").json() == batches_before
    wider = {
        "call_name": "b",
        "agent_id": "agent_x",
        "recipients": recipients[:3],
        "allowed_number_types": ["fixed_line_or_mobile", "personal_number", "shared_cost"],
    }
    accepted = service.api("POST", "/v1/convai/batch-calling/submit", json=wider)
    assert accepted.status_code == 200, accepted.text
    assert stored_numbers(service, accepted.json()["id"]) == [
        "+14155550100",
        "+447012345678",
        "+491371234567",
    ]


def test_do_not_call_takes_any_valid_number_but_no_rewritten_one(service: Service) -> None:
    """Attack: a number a campaign may be allowed to call later could not be put on the
    do-not-call list, or a service code was listed as another number. Promise: any valid type
    may be listed (a listed number is never dialled, whatever its type); service codes,
    extensions and NUL bytes in the number are refused there too (a NUL in the note is trimmed:
    it must not keep the number off the list)."""
    listed = service.api("POST", "/api/v1/dnc", json={"phone_number": PERSONAL})
    assert listed.status_code == 201, listed.text
    allowing = create_via_api(service, name="p", allowed_number_types=["personal_number"])
    blocked = service.api("POST", "/api/v1/calls", json={"to": PERSONAL, "campaign_id": allowing})
    assert blocked.status_code == 422 and blocked.json()["error"]["code"] == "dnc"
    for raw in ("*67 415 555 0100", "+1 415 555 0100;ext=1"):
        refused = service.api("POST", "/api/v1/dnc", json={"phone_number": raw})
        assert refused.status_code == 422, raw
    imported = service.api(
        "POST",
        "/api/v1/dnc",
        data=(
            b"phone_number,reason\n"
            b"+1 415 555 0120,asked\x00\n"
            b"+1 415 555\x000121,asked\n"
            b"+1 415 555 0122;ext=1,asked\n"
            b"+49 1371 234567,asked\n"
        ),
        headers={"Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    # A NUL in the note does not keep its number off the list (the note is trimmed); in the
    # number itself it refuses the row, which is never read as another number.
    assert imported.json() == {
        "rows": 4,
        "added": 2,
        "already_listed": 0,
        "rejected": 2,
        "errors": [
            {"row": 3, "value": "+1 415 5550121", "reason": "nul_byte"},
            {"row": 4, "value": "+1 415 555 0122;ext=1", "reason": "extension"},
        ],
    }


def test_an_alternate_number_follows_the_campaigns_number_types() -> None:
    """Attack: a shared-cost number given as a contact's second number. Promise: an alternate
    of a type the campaign does not call is left out (never dialled); allowed, it is kept."""
    rows = f"phone_number,phone_number_2\n{FIXED},{SHARED_COST}\n".encode()
    (batch,) = parse_batches(io.BytesIO(rows), default_region="US")
    assert [(c.e164, c.alternates) for c in batch.contacts] == [("+14155550100", ())]
    (batch,) = parse_batches(
        io.BytesIO(rows), default_region="US", number_types={"fixed_line_or_mobile", "shared_cost"}
    )
    assert [(c.e164, c.alternates) for c in batch.contacts] == [
        ("+14155550100", ("+491371234567",))
    ]


async def test_a_recurring_campaign_releases_only_the_number_types_it_calls(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    """Attack: a named list (which belongs to no campaign) carries a personal number into a
    recurring campaign. Promise: each firing releases only the types its campaign calls."""
    rows = f"phone_number\n{FIXED}\n{PERSONAL}\n+1 900 200 1234\n".encode()
    report = await recurring.replace_list(sm, "daily", io.BytesIO(rows), default_region="US")
    assert (report.accepted, [e.reason for e in report.errors]) == (2, ["premium_rate"])
    monday_8am = datetime(2027, 1, 11, 8, 0, tzinfo=UTC)
    released = {}
    for name, types in (
        ("default", None),
        ("personal", ["fixed_line_or_mobile", "personal_number"]),
    ):
        spec = CampaignSpec(
            name=name,
            schedule_cron="0 8 * * 1-5",
            schedule_list="daily",
            allowed_number_types=types,
        )
        created = await create_campaign(sm, spec, {"stream": ()})
        await start_now(sm, created.id)
        await recurring.release(sm, created.id, monday_8am)
        async with sm() as session:
            released[name] = sorted(
                await session.scalars(
                    select(Contact.phone_number).where(Contact.campaign_id == created.id)
                )
            )
    assert released == {
        "default": ["+14155550100"],
        "personal": ["+14155550100", "+447012345678"],
    }
