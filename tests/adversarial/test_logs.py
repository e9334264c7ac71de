"""Issue 11, point 5: nothing in the logs names a person's number or gives away a key.

The oracle reads the log independently of the redaction code: every stretch of characters a number
can be written with (digits, spaces, ``( ) . - + /``, percent escapes) is read as its digits alone,
and none may contain a dialled number's ten national digits.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from bridge.ops import logs
from bridge.settings import SANDBOX_AUTH_TOKEN
from tests.campaign_flow import (
    contacts_csv,
    create_campaign,
    numbers,
    start,
    upload,
    wait_completed,
)
from tests.service import API_KEY, Service

# Characters a phone number may be written with, percent escapes included (%20, %28, %2B ...).
_NUMBER_SHAPED = re.compile(r"(?:\d|%[0-9A-Fa-f]{2}|[ ().+/-])+")


def written_forms(e164: str) -> list[str]:
    """The ways people type a NANP number: E.164, digits only, and the national formats."""
    national = e164[2:]
    area, exchange, line = national[:3], national[3:6], national[6:]
    return [
        e164,
        e164[1:],
        national,
        f"({area}) {exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"1-{area}-{exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"+1 {area} {exchange} {line}",
    ]


def numbers_in(text: str) -> set[str]:
    """Every digit string the log spells, separators and percent escapes taken out."""
    found = set()
    for span in _NUMBER_SHAPED.findall(text):
        digits = re.sub(r"\D", "", re.sub(r"%[0-9A-Fa-f]{2}", " ", span))
        if len(digits) >= 7:
            found.add(digits)
    return found


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_campaign_and_number_searches_log_no_number_and_no_key(
    database_url: str, tmp_path: Path, log_format: str
) -> None:
    """Attack: read the service's log after a campaign, a dashboard contact search typed in every
    common format, and requests that carry a key in the query string (``?token=``).
    Promise: the log (text or JSON) holds no dialled number in any form and no key or secret."""
    service = Service(database_url, tmp_path, CALLBRIDGE_LOG_FORMAT=log_format).start()
    try:
        created = service.api("POST", "/api/v1/api-keys", json={"name": "logs"})
        assert created.status_code == 201, created.text
        db_key = created.json()["key"]
        phones = numbers(12)
        campaign_id = create_campaign(service)
        upload(service, campaign_id, contacts_csv(phones))
        start(service, campaign_id)
        wait_completed(service, campaign_id)

        searched = phones[3]
        search = f"/api/v1/dashboard/campaigns/{campaign_id}/contacts"
        for form in written_forms(searched):
            found = service.api("GET", search, params={"q": form})
            assert found.status_code == 200, found.text
            # The same search written into the URL by hand, as a browser would send it.
            service.api("GET", f"{search}?q={quote(form, safe='()')}")
        for name in ("token", "api_key", "Key", "AUTHORIZATION", "secret", "signature"):
            answer = service.http.get(
                f"{service.url}/api/v1/campaigns/{campaign_id}?{name}={db_key}", timeout=10
            )
            assert answer.status_code == 200
        assert service.api("GET", f"/api/v1/campaigns?token={db_key}").status_code == 200
    finally:
        service.stop()

    text = service.log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        messages = "\n".join(str(r.get("message", "")) for r in records)
        assert "aiohttp.access" in {r["logger"] for r in records}
    else:
        messages = text
    # The requests above were logged (masked), so the check below looks at something real.
    assert "/contacts?q=" in messages and "token=" in messages
    spelled = numbers_in(text)
    for phone in phones:
        national = phone[2:]
        assert not [d for d in spelled if national in d], (phone, sorted(spelled)[:20])
        for form in written_forms(phone):
            assert form not in text, form
    for secret in (db_key, db_key[len("cb_") :], API_KEY, SANDBOX_AUTH_TOKEN):
        assert secret not in text


def test_every_way_of_writing_a_number_is_masked_and_ids_and_times_are_not() -> None:
    """Attack: a number written nationally (digits, parentheses, dots, dashes, URL-encoded), or a
    credential in a query string, JSON field or header, reaches a log message or a traceback.
    Promise: each is masked with a recognisable shape that never shows the whole number, while
    ids, timestamps and short counts stay readable."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    for inner in (logging.Formatter(logs.TEXT_FORMAT), logs.json_formatter()):
        handler = Collect()
        handler.setFormatter(logs.RedactingFormatter(inner, logs.Redactor(["configured-secret-1"])))
        logger = logging.getLogger("tests.adversarial.logs")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            logger.warning(
                "search %s | %s | %s | %s | %s | %s",
                "4155550170",
                "(415) 555-0170",
                "415.555.0170",
                "1-415-555-0170",
                "q=%28415%29%20555-0170",
                "+14155550170",
            )
            logger.info('sent {"api_key": "abc123456"} Authorization: Bearer xyz987654 ?token=cb_k')
            try:
                raise ValueError("bad number 4155550170 with configured-secret-1")
            except ValueError:
                logger.exception("failed for ct_0123456789abcdef0123 at 2026-11-26T01:38:43")
        finally:
            logger.removeHandler(handler)
    text = "\n".join(records)
    assert "4155550170" not in text and "555-0170" not in text and "555.0170" not in text
    assert "(***) ***-0170" in text and "***.***.0170" in text and "*-***-***-0170" in text
    assert "+1415***0170" in text and "%28***%29%20***-0170" in text
    assert "abc123456" not in text and "xyz987654" not in text and "cb_k" not in text
    assert "configured-secret-1" not in text and "ValueError" in text
    assert "ct_0123456789abcdef0123" in text and "2026-11-26T01:38:43" in text
