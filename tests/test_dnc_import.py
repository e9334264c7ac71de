"""The do-not-call CSV import: its report, its reasons, its scopes, and all-or-nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bridge.app_keys import SESSIONMAKER
from campaigns.models import DncEntry

KEY = "dnc-import-key-" + "0" * 16
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def client(app_client: Any) -> Any:
    return await app_client(api_keys=(KEY,))


async def upload(client: Any, body: bytes, query: str = "") -> tuple[int, Any]:
    response = await client.post(
        f"/api/v1/dnc{query}", data=body, headers={**AUTH, "Content-Type": "text/csv"}
    )
    return response.status, await response.json()


async def entries(client: Any) -> list[tuple[str, str | None, str | None]]:
    async with client.app[SESSIONMAKER]() as session:
        rows = await session.execute(
            select(DncEntry.phone_number, DncEntry.campaign_id, DncEntry.reason).order_by(
                DncEntry.id
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_report_counts_reasons_and_repeats(client: Any) -> None:
    listed = await client.post("/api/v1/dnc", json={"phone_number": "+12125550100"}, headers=AUTH)
    assert listed.status == 201
    body = (
        "Phone_Number ,Reason\n"
        "+12125550100,again\n"  # already on the list
        "(212) 555-0101,asked by phone\n"
        "\n"  # a blank line is no row
        "not a number,x\n"
        "+12125550101,twice in the file\n"
        "+12125550102," + "r" * 300 + "\x00\n"
    ).encode()
    status, report = await upload(client, body)
    assert status == 200, report
    assert report == {
        "rows": 5,
        "added": 2,
        "already_listed": 2,
        "rejected": 1,
        "errors": [{"row": 5, "value": "not a number", "reason": "unparseable"}],
    }
    assert await entries(client) == [
        ("+12125550100", None, None),
        ("+12125550101", None, "asked by phone"),
        # A note too long for its column (or holding NUL) is trimmed; the number is kept.
        ("+12125550102", None, "r" * 200),
    ]


async def test_campaign_list_and_unknown_campaign(client: Any) -> None:
    created = await client.post("/api/v1/campaigns", json={"name": "scoped"}, headers=AUTH)
    campaign_id = (await created.json())["id"]
    status, report = await upload(
        client, b"phone_number\n2125550100\n", f"?campaign_id={campaign_id}&default_region=US"
    )
    assert status == 200 and report["added"] == 1, report
    assert await entries(client) == [("+12125550100", campaign_id, None)]
    status, answer = await upload(client, b"phone_number\n+12125550101\n", "?campaign_id=cmp_none")
    assert status == 404, answer


# 3,000 valid rows, stored in batches before the end of the file is read.
VALID_ROWS = b"phone_number\n" + b"".join(b"+1212200%04d\n" % i for i in range(3000))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"number\n+12125550100\n", "no phone_number column"),
        (VALID_ROWS + b"\xff\n", "not UTF-8"),
        (VALID_ROWS + b'"' + b"x" * 200_000 + b'"\n', "not valid CSV"),
    ],
)
async def test_refused_file_stores_nothing(client: Any, body: bytes, words: str) -> None:
    status, answer = await upload(client, body)
    assert status == 422 and answer["error"]["code"] == "csv_refused", answer
    assert words in answer["error"]["message"]
    assert await entries(client) == []
