"""The whole campaign job from the shell: `callbridge campaign`, `run`, `watch` against `serve`."""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from tests.campaign_flow import contacts_csv, export_rows, numbers, predicted
from tests.conftest import TEST_DATABASE_URL_ENV
from tests.databases import on_server
from tests.service import API_KEY, Service, free_port, wait_until

SERVICE_ENV = {
    # The webhook test's receiver listens on the loopback, which only this lets a target be.
    "CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    # Shorter sandbox calls: the outcomes (by the number's last digits) stay the same.
    "CALLBRIDGE_SANDBOX_RING_SECONDS": "0.05",
    "CALLBRIDGE_SANDBOX_TALK_SECONDS": "0.2",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # One service for the module: starting `serve` is the slow part of these tests.
    workdir = tmp_path_factory.mktemp("cli")
    server = os.environ.get(TEST_DATABASE_URL_ENV)
    if not server:
        svc = Service(f"sqlite:///{workdir / 'cli.db'}", workdir, **SERVICE_ENV).start()
        yield svc
        svc.stop()
        return
    name = f"cb_test_{secrets.token_hex(6)}"
    on_server(server, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        svc = Service(url, workdir, **SERVICE_ENV).start()
        yield svc
        svc.stop()
    finally:
        on_server(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(
    service: Service | None, *args: str, key: str = API_KEY, url: str | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLBRIDGE_API_KEY": key}
    env["CALLBRIDGE_URL"] = url or (service.url if service else "http://127.0.0.1:9")
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kw,
    )


def cli_json(service: Service, *args: str) -> Any:
    done = cli(service, *args, "--json")
    assert done.returncode == 0, (args, done.returncode, done.stderr)
    return json.loads(done.stdout)


POLICY = """\
# A policy file as a user writes it: the short names next to the API's own.
agent: agent_cli
from: "+15005550006"
timezone: UTC
windows: ["daily 00:00-24:00"]
max_attempts: 3
retry_delay: 1
retries:
  busy: {retry: true, delays: [1]}
pace: {concurrency: 25}
"""


def test_a_whole_campaign_through_the_cli(service: Service, tmp_path: Path) -> None:
    """Create from a CSV and a policy file, start, pause, resume, watch to the end, export:
    every step through `callbridge`, every answer read as JSON, every disposition as the
    sandbox's table predicts."""
    phones = numbers(100)
    csv_path = tmp_path / "contacts.csv"
    csv_path.write_bytes(contacts_csv(phones))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)

    created = cli_json(service, "campaign", "create", str(csv_path), "--policy", str(policy))
    campaign = created["campaign"]
    cid = campaign["id"]
    assert campaign["status"] == "draft" and campaign["concurrency"] == 25
    assert campaign["calling_periods"] == [
        {"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00"}
    ]
    assert campaign["retry_rules"]["busy"] == {"retry": True, "delays": [1]}
    assert created["intake"] == {"rows": 100, "accepted": 100, "rejected": 0, "errors": []}
    assert cid in [c["id"] for c in cli_json(service, "campaign", "list")]

    assert cli_json(service, "campaign", "start", cid)["status"] == "running"
    assert cli_json(service, "campaign", "pause", cid)["status"] == "paused"
    shown = cli_json(service, "campaign", "show", cid)
    assert shown["status"] == "paused" and shown["counts"]["contacts"] == 100
    assert cli_json(service, "campaign", "resume", cid)["status"] == "running"

    watched = cli(service, "campaign", "watch", cid, "--interval", "0.2", "--json")
    assert watched.returncode == 0, watched.stderr
    summary = json.loads(watched.stdout)
    assert summary["status"] == "completed" and summary["contacts"] == 100
    expected = Counter(predicted(p)[0] for p in phones)
    assert {k: v for k, v in summary["dispositions"].items() if v} == dict(expected)
    assert summary["attempts"] == sum(predicted(p)[1] for p in phones)

    rows = cli_json(service, "campaign", "export", cid)
    assert {r["phone_number"]: (r["disposition"], int(r["attempts"])) for r in rows} == {
        p: predicted(p) for p in phones
    }
    exported = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "campaign", "export", cid, "--url", service.url],
        env={**os.environ, "CALLBRIDGE_API_KEY": API_KEY},
        capture_output=True,
        timeout=60,
        check=True,
    )
    over_api = service.api("GET", f"/api/v1/campaigns/{cid}/export.csv")
    assert exported.stdout == over_api.content


def test_run_a_200_row_csv_with_yes(service: Service, tmp_path: Path) -> None:
    """`callbridge run contacts.csv --yes --json`: one JSON summary at the end, and an export
    file byte-identical to the API's."""
    phones = numbers(200, first_area=2)
    csv_path = tmp_path / "reminders.csv"
    csv_path.write_bytes(contacts_csv(phones))
    out = tmp_path / "results.csv"
    done = cli(
        service,
        "run",
        str(csv_path),
        "--yes",
        "--json",
        "--agent",
        "agent_run",
        "--from",
        "+15005550006",
        "--max-attempts",
        "3",
        "--retry-delay",
        "1",
        "--concurrency",
        "40",
        "--window",
        "mon-sun 00:00-24:00",
        "--timezone",
        "UTC",
        "--interval",
        "0.2",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert "intake: 200 rows, 200 accepted, 0 rejected" in done.stderr
    assert summary["contacts"] == 200 and summary["status"] == "completed"
    assert summary["attempts"] == sum(predicted(p)[1] for p in phones)
    assert summary["dispositions"] == {
        "answered": 130,
        "voicemail": 30,
        "no_answer": 20,
        "busy": 10,
        "failed": 10,
    }
    assert summary["export"] == str(out)
    over_api = service.api("GET", f"/api/v1/campaigns/{summary['campaign_id']}/export.csv")
    assert out.read_bytes() == over_api.content
    assert len(export_rows(service, summary["campaign_id"])) == 200


def test_run_without_yes_and_without_a_terminal_creates_nothing(
    service: Service, tmp_path: Path
) -> None:
    csv_path = tmp_path / "few.csv"
    csv_path.write_bytes(contacts_csv(numbers(3, first_area=5)))
    before = len(service.api("GET", "/api/v1/campaigns").json())
    done = cli(service, "run", str(csv_path), "--agent", "a", stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "callbridge: give --yes to run without a terminal to confirm on"
    )
    assert len(service.api("GET", "/api/v1/campaigns").json()) == before


def test_watch_redraws_in_a_terminal_while_calls_happen(service: Service, tmp_path: Path) -> None:
    """`campaign watch` on a terminal (a pty): the view is redrawn in place (cursor moved back
    up) with the count of finished contacts rising, until the campaign ends (exit status 0)."""
    csv_path = tmp_path / "slow.csv"
    csv_path.write_bytes(contacts_csv(numbers(24, first_area=6)))  # all answered
    created = cli_json(
        service, "campaign", "create", str(csv_path), "--agent", "a", "--concurrency", "2"
    )
    cid = created["campaign"]["id"]
    assert cli_json(service, "campaign", "start", cid)["status"] == "running"

    primary, secondary = pty.openpty()
    env = {
        **os.environ,
        "CALLBRIDGE_URL": service.url,
        "CALLBRIDGE_API_KEY": API_KEY,
        "TERM": "xterm-256color",
        "COLUMNS": "100",
        "LINES": "40",
    }
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "campaign", "watch", cid, "--interval", "0.1"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    captured = bytearray()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the other end closed: the process has exited
                break
            if not chunk:
                break
            captured += chunk
        elif process.poll() is not None:
            break
    os.close(primary)
    assert process.wait(timeout=10) == 0, captured.decode(errors="replace")[-2000:]
    screen = captured.decode(errors="replace")
    assert "\x1b[1A" in screen or "\x1b[2K" in screen, "no redraw in place"
    seen = {int(n) for n in re.findall(r"(\d+)/24 done", screen)}
    assert len(seen) >= 3 and 24 in seen and min(seen) < 24, sorted(seen)
    assert "answered" in screen


# ---- error paths: one line on stderr, and the exit code a script can test ---------------------


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.stdout == ""
    return lines[0]


def test_service_down(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    done = cli(None, "campaign", "list", "--json", url=down)
    assert done.returncode == 1
    assert _one_line(done).startswith(f"callbridge: cannot reach the service at {down}")


def test_wrong_key(service: Service) -> None:
    done = cli(service, "campaign", "list", key="cb_not_a_key")
    assert done.returncode == 1
    assert _one_line(done) == (
        "callbridge: unauthorized: invalid API key; check CALLBRIDGE_API_KEY (HTTP 401)"
    )


def test_unknown_campaign(service: Service) -> None:
    for args in (("show", "cmp_nope"), ("start", "cmp_nope"), ("watch", "cmp_nope")):
        done = cli(service, "campaign", *args, "--json")
        assert done.returncode == 1, args
        assert _one_line(done) == "callbridge: not_found: no campaign 'cmp_nope' (HTTP 404)"


def test_bad_policy_file(service: Service, tmp_path: Path) -> None:
    before = len(service.api("GET", "/api/v1/campaigns").json())
    broken = tmp_path / "broken.yaml"
    broken.write_text("windows: [mon-fri 09:00-17:00\nagent: x\n")
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"agent": "a", "max_attempt": 3}))
    window = tmp_path / "window.yaml"
    window.write_text("windows: ['weekdays 9-5']\n")
    for path, message in (
        (broken, f"callbridge: policy file {broken}: not valid YAML or JSON"),
        (typo, f"callbridge: policy file {typo}: unknown setting 'max_attempt'"),
        (window, f"callbridge: policy file {window}: window 'weekdays 9-5' is not like"),
    ):
        done = cli(service, "campaign", "create", "--policy", str(path), "--json")
        assert done.returncode == 2, done.stderr
        assert _one_line(done).startswith(message)
    # Refused by the service (a value it cannot use): its code and message, exit status 1.
    refused = tmp_path / "refused.yaml"
    refused.write_text("name: r\nvoicemail: shout\n")
    done = cli(service, "campaign", "create", "--policy", str(refused))
    assert done.returncode == 1
    assert re.fullmatch(r"callbridge: invalid_body: .*'shout'.* \(HTTP 422\)", _one_line(done))
    assert len(service.api("GET", "/api/v1/campaigns").json()) == before


def test_help_has_an_example_and_completion_works_for_bash_and_zsh() -> None:
    """Every command's --help shows an example; `completion bash|zsh` prints a script, and the
    completion it drives offers the subcommands."""
    from bridge import api_cli
    from bridge.cli import cli as root
    from campaigns import api_key_store

    # Written out in the CLI so that it starts without SQLAlchemy: the same as the domain's.
    assert (api_cli.SCOPES, api_cli.DEFAULT_SCOPE) == (
        api_key_store.SCOPES,
        api_key_store.DEFAULT_SCOPE,
    )

    def commands(group: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        for name, command in group.commands.items():
            yield (*path, name)
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))

    runner = CliRunner()
    for path in commands(root, ()):
        shown = runner.invoke(root, [*path, "--help"], prog_name="callbridge")
        assert shown.exit_code == 0, path
        assert "Example:" in shown.output and "callbridge" in shown.output, path
        if not hasattr(root.commands[path[0]], "commands") or len(path) > 1:
            assert "--json" in shown.output, path
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "compdef")):
        script = cli(None, "completion", shell)
        assert script.returncode == 0 and marker in script.stdout, script.stdout
    offered = subprocess.run(
        [sys.executable, "-m", "bridge.cli"],
        env={
            **os.environ,
            "_CALLBRIDGE_COMPLETE": "bash_complete",
            "COMP_WORDS": "callbridge campaign pa",
            "COMP_CWORD": "2",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "plain,pause" in offered.stdout.split(), offered.stdout


def test_dnc_and_one_call_from_the_shell(service: Service, tmp_path: Path) -> None:
    """`dnc add|check|import|export|remove` and `call --var --idempotency-key --at`, each read
    back through the API it drives."""
    number = "+13125550177"
    assert cli_json(service, "dnc", "check", number)["listed"] is False
    added = cli_json(service, "dnc", "add", "(312) 555-0177", "--reason", "asked")
    assert added["phone_number"] == number
    checked = cli_json(service, "dnc", "check", "3125550177")
    assert checked["listed"] is True and checked["entries"][0]["reason"] == "asked"
    listing = tmp_path / "dnc.csv"
    listing.write_text("phone_number,reason\n+13125550178,x\nnot a number,y\n")
    report = cli_json(service, "dnc", "import", str(listing))
    assert (report["added"], report["rejected"]) == (1, 1)
    exported = cli(service, "dnc", "export")
    assert exported.returncode == 0
    assert f"{number},asked," in exported.stdout and "+13125550178,x," in exported.stdout
    cli_json(service, "dnc", "remove", number)
    assert cli_json(service, "dnc", "check", number)["listed"] is False

    args = ("call", "+13125550150", "--agent", "agent_one", "--at", "2099-01-05T09:30")
    first = cli_json(service, *args, "--var", "first_name=Ada", "--idempotency-key", "k-1")
    again = cli_json(service, *args, "--var", "first_name=Ada", "--idempotency-key", "k-1")
    assert first["id"] == again["id"] and first["state"] == "pending"
    assert first["call_at"].startswith("2099-01-05T")
    contact = service.api("GET", f"/api/v1/contacts/{first['id']}").json()
    assert contact["dynamic_variables"] == {"first_name": "Ada"}
    bad = cli(service, "call", "+13125550150", "--var", "no_equals_sign")
    assert bad.returncode == 2
    assert _one_line(bad) == "callbridge: --var 'no_equals_sign' is not name=value"


def test_webhooks_add_test_and_deliveries(service: Service) -> None:
    """`webhooks add`, then `webhooks test`: the receiver gets one signed webhook.test event,
    the command reports its answer, and `webhooks deliveries` lists it."""
    received: list[tuple[dict[str, Any], str | None]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((json.loads(body), self.headers.get("Callbridge-Signature")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        made = cli_json(service, "webhooks", "add", target, "--event", "contact.finished")
        assert made["url"] == target and made["secret"]
        assert made["id"] in [w["id"] for w in cli_json(service, "webhooks", "list")]
        tested = cli_json(service, "webhooks", "test", made["id"])
        assert tested["status"] == "delivered" and tested["last_status_code"] == 204
        assert len(received) == 1
        event, signature = received[0]
        assert event["type"] == "webhook.test" and signature and "v0=" in signature
        deliveries = cli_json(service, "webhooks", "deliveries", made["id"])
        assert [d["event_type"] for d in deliveries] == ["webhook.test"]
        unknown = cli(service, "webhooks", "test", "wh_nope")
        assert unknown.returncode == 1
        assert _one_line(unknown).startswith("callbridge: not_found: ")
    finally:
        server.shutdown()
        server.server_close()


def test_keys_with_scopes_over_the_api(service: Service) -> None:
    """`keys create --url --scope read` makes a key over the API that may read and not write;
    `keys list --url` shows its scope; `keys revoke --url` stops it at once."""
    made = cli_json(
        service, "keys", "create", "--url", service.url, "--name", "ro", "--scope", "read"
    )
    assert made["scope"] == "read" and made["key"].startswith(made["prefix"])
    assert cli(service, "campaign", "list", "--json", key=made["key"]).returncode == 0
    refused = cli(service, "campaign", "create", "--name", "x", key=made["key"])
    assert refused.returncode == 1
    assert _one_line(refused).startswith("callbridge: ") and "(HTTP 403)" in refused.stderr
    listing = cli(service, "keys", "list", "--url", service.url)
    assert re.search(rf"{made['id']}\s+\S+\s+ro\s+read\s+active", listing.stdout), listing.stdout
    assert cli_json(service, "keys", "revoke", made["id"], "--url", service.url)["revoked"]
    gone = cli(service, "campaign", "list", key=made["key"])
    assert gone.returncode == 1 and "(HTTP 401)" in _one_line(gone)


def test_watch_exits_3_when_the_campaign_ended_with_attention_items(
    service: Service, tmp_path: Path
) -> None:
    """A caller id the account has not verified trips the circuit breaker: the campaign pauses
    with an attention item. `campaign watch` keeps watching through the pause; once the caller
    id is fixed (`campaign update`) and the campaign resumed, it ends, and watch exits with 3
    and the item in its JSON."""
    from bridge.sandbox.wire import UNVERIFIED_FROM

    csv_path = tmp_path / "breaker.csv"
    csv_path.write_bytes(contacts_csv(numbers(6, first_area=7)))  # all answered
    created = cli_json(
        service,
        "campaign",
        "create",
        str(csv_path),
        "--agent",
        "a",
        "--from",
        UNVERIFIED_FROM,
        "--concurrency",
        "6",
        "--retry-delay",
        "1",
    )
    cid = created["campaign"]["id"]
    env = {**os.environ, "CALLBRIDGE_URL": service.url, "CALLBRIDGE_API_KEY": API_KEY}
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.cli",
            "campaign",
            "watch",
            cid,
            "--interval",
            "0.1",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cli_json(service, "campaign", "start", cid)
        wait_until(
            lambda: service.api("GET", f"/api/v1/campaigns/{cid}").json()["status"] == "paused",
            timeout=30,
            what="the circuit breaker to pause the campaign",
        )
        assert watcher.poll() is None, "watch stopped at a pause"
        fixed = cli_json(service, "campaign", "update", cid, "--from", "+15005550006")
        assert fixed["from_number"] == "+15005550006"
        assert cli_json(service, "campaign", "resume", cid)["status"] == "running"
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 3, err
    summary = json.loads(out)
    assert summary["status"] == "completed" and summary["exit_code"] == 3
    assert [item["kind"] for item in summary["attention"]] == ["circuit_breaker"]
    assert summary["dispositions"]["answered"] == 6
