"""schemathesis fuzzes callbridge's ElevenLabs-compatible routes against ElevenLabs' own published
OpenAPI (tests/specs/elevenlabs-openapi.json, see tests/specs/README.md), authenticated with
``xi-api-key`` as the elevenlabs SDK is: no 5xx, no status code the vendor's spec does not
declare, and every answer in the shape that spec gives it.

What the spec covers of ours: batch calling (submit, workspace, get, cancel, retry) and Twilio
outbound-call. Its conversation and signed-URL paths are ElevenLabs' agent API, which callbridge
calls (the sandbox agent plays it) but does not serve, so they are left out. No published
version of the spec has the outbound-campaigns or register-call paths (see the README).

Where the spec cannot be met as written, the run is narrowed, each for the reason given:

- Every operation declares 200 and 422 only (FastAPI's defaults: ElevenLabs documents none of
  its other answers). A ``batch_id`` that names no batch has neither (there is no batch to
  return, and the request itself is valid): callbridge answers 404 ``{"detail": ...}``, which
  the SDK raises as ``ApiError`` (tests/test_batch_calling_behaviour.py). So the fuzzer's
  ``batch_id`` is always a real batch: a finished one, a scheduled one, a cancelled one. For
  the same reason cancel and retry are given batches whose state lets them succeed (cancelling a
  cancelled batch, retrying one with no failed recipients): a completed batch cannot be
  cancelled, a running one cannot be retried (409).
- ``DELETE /v1/convai/batch-calling/{batch_id}`` came after this spec (SDK 2.78's
  ``batch_calls.delete``) and callbridge serves it; schemathesis probes methods a path does not
  declare, and that probe would delete the fixture batches, so DELETE is not probed.
- Recipients' phone numbers (and outbound-call's ``to_number``) come from the sandbox's table:
  random text is refused (422), and then no successful submit or call would be checked at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from elevenlabs import ElevenLabs
from elevenlabs.types import ConversationInitiationClientDataRequestInput, OutboundCallRecipient

from tests.service import API_KEY, Service, wait_until

SPEC = Path(__file__).parent / "specs" / "elevenlabs-openapi.json"
# Bounded so the run takes well under a minute on a shared machine.
MAX_EXAMPLES = "15"
# The sandbox table (bridge/sandbox/number_table.py): a person, a voicemail box, no answer, busy.
PHONES = ["+14155550100", "+14155550160", "+14155550170", "+12125550181"]
# Served by the sandbox agent, not by callbridge (see the module docstring).
NOT_SERVED = "^/v1/convai/conversation"
OPERATIONS = {
    "GET /v1/convai/batch-calling/workspace",
    "GET /v1/convai/batch-calling/{batch_id}",
    "POST /v1/convai/batch-calling/submit",
    "POST /v1/convai/batch-calling/{batch_id}/cancel",
    "POST /v1/convai/batch-calling/{batch_id}/retry",
    "POST /v1/convai/twilio/outbound-call",
}


def _batches(client: ElevenLabs) -> dict[str, str]:
    """A finished batch (completed, voicemail and failed recipients), a scheduled one and a
    cancelled one, made through the SDK."""
    batches = client.conversational_ai.batch_calls
    later = int(time.time()) + 30 * 86400

    def submit(name: str, phones: list[str], scheduled: int | None = None) -> str:
        return batches.create(
            call_name=name,
            agent_id="agent_e2e",
            agent_phone_number_id="+15005550006",
            scheduled_time_unix=scheduled,
            recipients=[
                OutboundCallRecipient(
                    id=f"{name}-{i}",
                    phone_number=phone,
                    conversation_initiation_client_data=(
                        ConversationInitiationClientDataRequestInput(
                            dynamic_variables={"n": i, "vip": True, "note": None}
                        )
                    ),
                )
                for i, phone in enumerate(phones)
            ],
        ).id

    ids = {
        "finished": submit("finished", PHONES),
        "scheduled": submit("scheduled", PHONES[:1], later),
        "cancelled": submit("cancelled", PHONES[:1], later),
        "to_cancel": submit("to_cancel", PHONES[:1], later),
    }
    batches.cancel(ids["cancelled"])
    wait_until(
        lambda: batches.get(ids["finished"]).status == "completed",
        timeout=60,
        interval=0.2,
        what="the fixture batch to complete",
    )
    return ids


def _config(ids: dict[str, str]) -> str:
    def values(*names: str) -> str:
        return json.dumps([ids[name] for name in names])

    return f"""
[dictionaries]
batches = {{ values = {values("finished", "scheduled", "cancelled")} }}
cancellable = {{ values = {values("cancelled", "to_cancel")} }}
phones = {{ values = {json.dumps(PHONES)} }}

[phases.coverage]
unexpected-methods = ["GET", "PUT", "POST", "OPTIONS", "PATCH", "TRACE", "QUERY"]

[[operations]]
include-name = "GET /v1/convai/batch-calling/{{batch_id}}"
parameters = {{ "path.batch_id" = {{ dictionary = "batches" }} }}

[[operations]]
include-name = "POST /v1/convai/batch-calling/{{batch_id}}/cancel"
parameters = {{ "path.batch_id" = {{ dictionary = "cancellable" }} }}

[[operations]]
include-name = "POST /v1/convai/batch-calling/{{batch_id}}/retry"
parameters = {{ "path.batch_id" = {{ dictionary = "cancellable" }} }}

[[operations]]
include-name = "POST /v1/convai/batch-calling/submit"
parameters = {{ "body.recipients[*].phone_number" = {{ dictionary = "phones" }} }}

[[operations]]
include-name = "POST /v1/convai/twilio/outbound-call"
parameters = {{ "body.to_number" = {{ dictionary = "phones" }} }}
"""


def _answers(har: Path, base_url: str) -> dict[str, set[int]]:
    """The statuses each operation answered with, from schemathesis' HAR report."""
    seen: dict[str, set[int]] = defaultdict(set)
    for entry in json.loads(har.read_text())["log"]["entries"]:
        method = entry["request"]["method"]
        path = entry["request"]["url"].removeprefix(base_url).split("?")[0]
        parts = path.split("/")
        if (
            len(parts) > 4
            and parts[3] == "batch-calling"
            and parts[4]
            not in (
                "submit",
                "workspace",
            )
        ):
            parts[4] = "{batch_id}"
        seen[f"{method} {'/'.join(parts)}"].add(entry["response"]["status"])
    return seen


def test_elevenlabs_routes_conform_to_elevenlabs_openapi(database_url: str, tmp_path: Path) -> None:
    service = Service(database_url, tmp_path, CALLBRIDGE_RATE_LIMIT_PER_MINUTE="100000").start()
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    config = tmp_path / "schemathesis.toml"
    try:
        client = ElevenLabs(api_key=API_KEY, base_url=service.url)
        config.write_text(_config(_batches(client)))
        run = subprocess.run(
            [
                st,
                "--config-file",
                str(config),
                "run",
                str(SPEC),
                "--url",
                service.url,
                "--exclude-path-regex",
                NOT_SERVED,
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance",
                "--max-examples",
                MAX_EXAMPLES,
                "--phases",
                "examples,coverage,fuzzing",
                # One worker: CPython 3.11's ast.parse, which hypothesis calls to describe
                # filters, can fail when threads parse at once (see test_schemathesis.py).
                "--workers",
                "1",
                "--header",
                f"xi-api-key: {API_KEY}",
                "--request-timeout",
                "30",
                "--suppress-health-check",
                "all",
                "--generation-database",
                "none",
                "--continue-on-failure",
                "--output-truncate",
                "false",
                "--report",
                "har",
                "--report-har-path",
                str(tmp_path / "run.har"),
                "--seed",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        service.stop()
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    # Each operation was checked on its successful answer too, not only on refusals.
    answers = _answers(tmp_path / "run.har", service.url)
    assert {op for op in OPERATIONS if 200 in answers.get(op, set())} == OPERATIONS, answers
    assert all(answers[op] <= {200, 422} for op in OPERATIONS), answers
