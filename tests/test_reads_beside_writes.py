"""Reads do not wait for writes: a dashboard or a script polling a campaign gets its answer while
the service is busy writing (on SQLite, where one transaction writes at a time, the reads have
connections of their own and read the last commit)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import update

from bridge.app_keys import SESSIONMAKER
from campaigns.models import Campaign
from tests.service import API_KEY

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# Far below the wait a read queued behind the writer would have (the pool's 120 s), far above
# what a read takes on a loaded machine.
ANSWER_WITHIN = 15


async def test_a_campaign_is_read_while_a_write_transaction_is_open(app_client: Any) -> None:
    client = await app_client(api_keys=(API_KEY,))
    created = await client.post(
        "/api/v1/campaigns",
        headers=HEADERS,
        json={"name": "before", "agent_id": "agent_x", "from_number": "+15005550006"},
    )
    assert created.status == 201, await created.text()
    campaign_id = (await created.json())["id"]

    async with client.app[SESSIONMAKER].begin() as session:
        # The writer is busy: a change made, not committed yet.
        await session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(name="uncommitted")
        )
        reads = [
            client.get(f"/api/v1/campaigns/{campaign_id}", headers=HEADERS),
            client.get("/api/v1/campaigns", headers=HEADERS),
            client.get(f"/api/v1/campaigns/{campaign_id}/contacts", headers=HEADERS),
        ]
        answers = await asyncio.wait_for(asyncio.gather(*reads), ANSWER_WITHIN)
        assert [answer.status for answer in answers] == [200, 200, 200]
        read, listed = await answers[0].json(), await answers[1].json()
        # What was committed, never what is still being written.
        assert read["name"] == "before"
        assert [c["name"] for c in listed] == ["before"]
        assert read["counts"]["contacts"] == 0

    after = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=HEADERS)
    assert (await after.json())["name"] == "uncommitted"
