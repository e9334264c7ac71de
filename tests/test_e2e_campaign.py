"""A 200-contact CSV campaign against `callbridge serve` and its sandbox carrier."""

from __future__ import annotations

from pathlib import Path

from tests.campaign_flow import (
    assert_matches_table,
    contacts_csv,
    create_campaign,
    numbers,
    start,
    upload,
    wait_completed,
)
from tests.service import Service, wait_until


def test_campaign_runs_to_the_tables_dispositions(service: Service) -> None:
    phones = numbers(200)
    campaign_id = create_campaign(service)
    report = upload(service, campaign_id, contacts_csv(phones))
    assert report == {"rows": 200, "accepted": 200, "rejected": 0, "errors": []}
    start(service, campaign_id)
    state = wait_completed(service, campaign_id)
    counts = state["counts"]
    assert counts["contacts"] == 200 and counts["pending"] == 0 and counts["in_progress"] == 0
    # Per 100 numbers: 60 + 5 answered, 10 + 5 voicemail, 10 no answer, 5 busy, 5 failed.
    assert counts["dispositions"] == {
        "answered": 130,
        "voicemail": 30,
        "no_answer": 20,
        "busy": 10,
        "failed": 10,
    }
    assert_matches_table(service, campaign_id, phones)


def test_kill_9_mid_campaign_then_restart_completes_without_double_dials(
    database_url: str, tmp_path: Path
) -> None:
    phones = numbers(200, first_area=4)
    service = Service(database_url, tmp_path).start()
    try:
        campaign_id = create_campaign(service, concurrency=20)
        upload(service, campaign_id, contacts_csv(phones))
        start(service, campaign_id)
        wait_until(lambda: len(service.sandbox_calls()) >= 80, timeout=60, what="80 dials")
        service.kill()
        service.start()
        wait_completed(service, campaign_id)
        assert_matches_table(service, campaign_id, phones)
    finally:
        service.stop()
