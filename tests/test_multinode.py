"""Three service nodes on one PostgreSQL database share a 5,000-contact campaign through one
carrier. The campaign's limits (50 live calls, 20 calls per second) hold for the nodes together,
as the carrier's own log shows; one node is killed (-9) mid-run and nothing is lost or doubled."""

from __future__ import annotations

import os
import random
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from tests.campaign_flow import (
    attempt_of,
    contacts_csv,
    create_campaign,
    export_rows,
    predicted,
    start,
    upload,
    wait_completed,
)
from tests.cluster import (
    SandboxProcess,
    many_numbers,
    most_in_sliding_second,
    most_live_at_once,
    most_per_wall_clock_second,
    scenario_figures,
    sent_instants,
)
from tests.conftest import TEST_DATABASE_URL_ENV
from tests.service import Service, wait_until

NODES = 3
CONTACTS = 5000
CONCURRENCY = 50
CPS = 20
# Dials the table predicts per hundred numbers under max_attempts 3 (see campaign_flow.PREDICTED).
DIALS_PER_HUNDRED = 155
# Connections per node; the carrier gets more, so that it never answers a create late because
# it waited for a connection. All must fit in a shared server's max_connections.
POOL = "5"
CARRIER_POOL = "15"


@pytest.mark.scenario
def test_three_nodes_share_limits_and_survive_losing_one(
    database_url: str, tmp_path: Path, scenario_seed: int
) -> None:
    if not os.environ.get(TEST_DATABASE_URL_ENV):
        pytest.skip(
            "not applicable on SQLite: several nodes need one shared PostgreSQL database "
            f"(set {TEST_DATABASE_URL_ENV})"
        )
    phones = many_numbers(CONTACTS)
    expected_dials = CONTACTS * DIALS_PER_HUNDRED // 100
    rng = random.Random(scenario_seed)
    # Which node dies, and when (in progress: dials so far).
    victim, kill_share = rng.randrange(NODES), rng.uniform(0.2, 0.7)
    print(f"node {victim} killed after {kill_share:.0%} of the dials")
    carrier = SandboxProcess(
        database_url,
        tmp_path,
        CALLBRIDGE_SANDBOX_RING_SECONDS="1.0",
        CALLBRIDGE_SANDBOX_TALK_SECONDS="2.5",
        CALLBRIDGE_DB_POOL_SIZE=CARRIER_POOL,
    ).start()
    nodes = [
        Service(
            database_url,
            tmp_path,
            CALLBRIDGE_SANDBOX_URL=carrier.url,
            CALLBRIDGE_STALE_CALL_SLACK_SECONDS="2",
            CALLBRIDGE_DB_POOL_SIZE=POOL,
            # A busy machine answers slowly: leave creates the default time before they count
            # as unclear (and are reconciled).
            CALLBRIDGE_PROVIDER_TIMEOUT_SECONDS="10",
        )
        for _ in range(NODES)
    ]
    try:
        for node in nodes:
            node.start()
        campaign_id = create_campaign(
            nodes[0],
            concurrency=CONCURRENCY,
            cps=CPS,
            retry_delay_seconds=1,
            ring_timeout_seconds=5,
            time_limit_seconds=5,
        )
        upload(nodes[0], campaign_id, contacts_csv(phones))
        start(nodes[0], campaign_id)
        wait_until(
            lambda: len(carrier.calls()) >= kill_share * expected_dials,
            timeout=600,
            interval=2,
            what=f"{kill_share:.0%} of the dials",
        )
        nodes[victim].kill()
        survivor = nodes[(victim + 1) % NODES]
        state = wait_completed(survivor, campaign_id, timeout=1200)
        assert state["counts"]["contacts"] == CONTACTS
        rows = {row["phone_number"]: row for row in export_rows(survivor, campaign_id)}
        calls = carrier.calls()
        sent = sent_instants(database_url)
        print(scenario_figures(calls, Counter(row["disposition"] for row in rows.values())))
    finally:
        for node in nodes:
            node.stop()
        carrier.stop()

    wrong = {
        phone: (rows[phone]["disposition"], rows[phone]["attempts"])
        for phone in phones
        if (rows[phone]["disposition"], int(rows[phone]["attempts"])) != predicted(phone)
    }
    assert not wrong, f"{len(wrong)} contacts off the table, e.g. {list(wrong.items())[:5]}"
    dials = Counter(call["to"] for call in calls)
    off = {p: dials[p] for p in phones if dials[p] != predicted(p)[1]}
    assert not off, f"dial counts off the table: {list(off.items())[:5]}"
    twice = {a: n for a, n in Counter(attempt_of(c) for c in calls).items() if n > 1}
    assert not twice, f"attempts dialled more than once: {twice}"
    assert len(calls) == expected_dials
    # Every node dialled: the work was shared, not done by whichever node claimed first.
    by_node = Counter(call["status_callback"].split("/webhooks/")[0] for call in calls)
    assert len(by_node) == NODES, by_node

    created = [datetime.fromisoformat(c["created_at"]) for c in calls]
    per_second = most_per_wall_clock_second(created)
    sliding = most_in_sliding_second(created)
    sent_sliding = most_in_sliding_second(sent)
    live = most_live_at_once(calls)
    print(f"dials by node: {by_node}")
    print(
        f"most dials in a wall-clock second {per_second}, in any sliding second {sliding} (as "
        f"the carrier stamped them); in any sliding second as the nodes sent them {sent_sliding} "
        f"({len(sent)} sends recorded)"
    )
    # Counted per wall-clock second, as the carrier counts calls per second.
    assert per_second <= CPS
    # Over any sliding second the nodes' sends stay near the rate (at exactly CPS any jitter at
    # all puts CPS + 1 in some window; late dials must not bunch up with the next ones on time).
    assert sent_sliding <= 1.25 * CPS
    # The carrier's stamps add its own queueing: here it shares two cores with three nodes and
    # the database, so a create can wait in its event loop for a tenth of a second or more.
    # Dials that bunch at the source (35 at cps 20 before sends were held to their slots) still
    # show here.
    assert sliding <= 1.5 * CPS
    assert live <= CONCURRENCY
