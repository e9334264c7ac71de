"""The chaos test: a 2,000-contact campaign through a carrier that misbehaves in every way the
sandbox can, with the service killed (-9) and restarted five times at random moments. Every contact
must still end as the sandbox's outcome table predicts, with no number dialled more often than its
attempts allow and no attempt dialled twice."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tests.campaign_flow import (
    assert_matches_table,
    contacts_csv,
    create_campaign,
    export_rows,
    start,
    upload,
    wait_completed,
)
from tests.cluster import many_numbers, scenario_figures
from tests.service import Service, wait_until

FAULTS = ",".join(
    [
        "rate_limit=0.10",
        "server_error=0.05",
        "create_timeout=0.02",
        "hang_seconds=5",
        "callback_duplicate=0.20",
        "callback_drop=0.05",
        "callback_reorder=0.30",
        "callback_delay=0.05",
        "callback_delay_seconds=0.5",
    ]
)
CONTACTS = 2000
KILLS = 5
# Dials the table predicts per hundred numbers under max_attempts 3 (see campaign_flow.PREDICTED).
DIALS_PER_HUNDRED = 60 + 10 + 30 + 15 + 15 + 10 + 15


def chaos_service(database_url: str, workdir: Path, seed: int) -> Service:
    return Service(
        database_url,
        workdir,
        CALLBRIDGE_SANDBOX_FAULTS=f"seed={seed},{FAULTS}",
        # Lost callbacks are looked for soon after a call must have ended.
        CALLBRIDGE_STALE_CALL_SLACK_SECONDS="2",
    )


@pytest.mark.scenario
def test_chaos_faults_and_kill_9_lose_nothing_and_dial_nothing_twice(
    database_url: str, tmp_path: Path, scenario_seed: int
) -> None:
    phones = many_numbers(CONTACTS)
    expected_dials = CONTACTS * DIALS_PER_HUNDRED // 100
    rng = random.Random(scenario_seed)
    # Random moments, measured in progress (dials so far) rather than in wall-clock time.
    kill_points = sorted(rng.uniform(0.05, 0.85) * expected_dials for _ in range(KILLS))
    print(f"kills after {[round(point) for point in kill_points]} dials")
    service = chaos_service(database_url, tmp_path, scenario_seed).start()
    campaign_id = ""
    try:
        campaign_id = create_campaign(
            service,
            concurrency=100,
            retry_delay_seconds=1,
            ring_timeout_seconds=5,
            time_limit_seconds=5,
        )
        upload(service, campaign_id, contacts_csv(phones))
        start(service, campaign_id)
        for point in kill_points:
            wait_until(
                lambda point=point: len(service.sandbox_calls()) >= point,
                timeout=300,
                interval=0.5,
                what=f"{point:.0f} dials",
            )
            service.kill()
            service.start()
        wait_completed(service, campaign_id, timeout=900)
        assert_matches_table(service, campaign_id, phones)
        assert len(service.sandbox_calls()) == expected_dials
    finally:
        # The figures, pass or fail (a failure's are the ones worth reading).
        if campaign_id and service.running:
            dispositions = Counter(row["disposition"] for row in export_rows(service, campaign_id))
            print(scenario_figures(service.sandbox_calls(), dispositions))
        service.stop()
