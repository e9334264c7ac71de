"""Commands that drive a running service over its REST API: campaigns, calls, dnc, webhooks, run."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from bridge.cli_common import (
    Api,
    Failure,
    UsageFailure,
    emit,
    json_option,
    note,
    remote,
)
from bridge.cli_policy import campaign_body, policy_options
from bridge.cli_watch import Outcome, print_summary, watch

CSV_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _console(as_json: bool) -> Console:
    # With --json, stdout holds the JSON document alone: everything for people goes to stderr.
    return Console(stderr=as_json)


def _intake_lines(report: dict[str, Any]) -> None:
    note(
        f"intake: {report['rows']} rows, {report['accepted']} accepted, "
        f"{report['rejected']} rejected"
    )
    for error in report["errors"][:20]:
        note(f"  row {error['row']}: {error['reason']} ({error['value']!r})")
    if len(report["errors"]) > 20:
        note(f"  ... and {len(report['errors']) - 20} more rejected rows")


def _upload(api: Api, campaign_id: str, csv_path: Path, phone_column: str | None) -> Any:
    with csv_path.open("rb") as source:
        return api.call(
            "POST",
            f"/api/v1/campaigns/{campaign_id}/contacts",
            data=source,
            content_type="text/csv",
            query={"phone_column": phone_column},
            headers={"Content-Length": str(os.fstat(source.fileno()).st_size)},
        )


def create_campaign(
    api: Api, body: dict[str, Any], csv_path: Path | None, phone_column: str | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A draft campaign with the CSV's contacts; a refused CSV leaves no draft behind."""
    campaign = api.call("POST", "/api/v1/campaigns", body=body)
    if csv_path is None:
        return campaign, None
    try:
        report = _upload(api, campaign["id"], csv_path, phone_column)
    except Failure:
        # The upload's own error is the one worth showing.
        with suppress(Failure):
            api.call("DELETE", f"/api/v1/campaigns/{campaign['id']}")
        raise
    return campaign, report


def _state_line(campaign: dict[str, Any]) -> str:
    counts = campaign.get("counts")
    if counts is None:  # the list has no counts: `campaign show` does
        return f"{campaign['id']}  {campaign['status']:<9}  {campaign['name']}"
    done = counts["contacts"] - counts["pending"] - counts["in_progress"]
    return f"{campaign['id']}  {campaign['status']:<9}  {done}/{counts['contacts']} done  " + str(
        campaign["name"]
    )


# ---- campaign ---------------------------------------------------------------------------------


@click.group()
def campaign() -> None:
    """Campaigns on a running service: create, update, list, show, start, pause, resume, cancel,
    watch, export.

    \b
    Example:
      export CALLBRIDGE_URL=http://127.0.0.1:8080 CALLBRIDGE_API_KEY=...
      callbridge campaign create contacts.csv --policy policy.yaml --agent agent_1
    """


@campaign.command("create")
@click.argument("csv_file", required=False, type=CSV_FILE)
@policy_options
@click.option("--phone-column", help="the CSV's phone column (default: phone_number)")
@json_option()
@remote
def campaign_create(
    api: Api, csv_file: Path | None, phone_column: str | None, as_json: bool, **flags: Any
) -> None:
    """Create a draft campaign from a policy file and/or flags, with a CSV's contacts.

    \b
    Example:
      callbridge campaign create contacts.csv --policy policy.yaml --window 'mon-fri 09:00-17:00'

    \b
    A policy file (YAML or JSON) holds the API's campaign fields, or these shorter names:
      name: reminders
      agent: agent_123
      from: "+14155550100"
      timezone: America/New_York
      windows: ["mon-fri 09:00-17:00", "sat 10:00-14:00"]
      us_tcpa: true
      max_attempts: 3
      retry_delay: 600
      retries: {busy: {retry: true, delays: [300, 1800]}, voicemail: {retry: false}}
      pace: {concurrency: 10, cps: 2}
      voicemail: leave_message
      voicemail_message: "Hello {{first_name}}, ..."
      agent_mode: stream
    """
    if csv_file is None and not flags.get("policy") and not flags.get("name"):
        raise UsageFailure("give a contacts CSV, a --policy file or at least --name")
    body = campaign_body(csv_file.stem if csv_file else "campaign", flags)
    created, report = create_campaign(api, body, csv_file, phone_column)
    if report is not None and not as_json:
        _intake_lines(report)
    emit(
        {"campaign": created, "intake": report},
        as_json=as_json,
        human=lambda: click.echo(f"created {created['id']} ({created['status']})"),
    )


@campaign.command("update")
@click.argument("campaign_id")
@policy_options
@json_option()
@remote
def campaign_update(api: Api, campaign_id: str, as_json: bool, **flags: Any) -> None:
    """Change a draft or paused campaign's settings (a policy file and/or flags).

    \b
    Example:
      callbridge campaign update cmp_0123456789abcdef0123 --from +14155550100 --concurrency 5
    """
    body = campaign_body(None, flags)
    if not body:
        raise UsageFailure("nothing to change: give --policy or a setting")
    changed = api.call("PATCH", f"/api/v1/campaigns/{campaign_id}", body=body)
    emit(changed, as_json=as_json, human=lambda: click.echo(_state_line(changed)))


@campaign.command("list")
@click.option("--status", help="only campaigns in this status (draft, running, paused, ...)")
@json_option()
@remote
def campaign_list(api: Api, status: str | None, as_json: bool) -> None:
    """List campaigns, newest first.

    \b
    Example:
      callbridge campaign list --status running --json | jq -r '.[].id'
    """
    rows = api.page_all("/api/v1/campaigns", {"status": status})

    def human() -> None:
        for row in rows:
            click.echo(_state_line(row))

    emit(rows, as_json=as_json, human=human)


@campaign.command("show")
@click.argument("campaign_id")
@json_option()
@remote
def campaign_show(api: Api, campaign_id: str, as_json: bool) -> None:
    """A campaign's settings, status and counts.

    \b
    Example:
      callbridge campaign show cmp_0123456789abcdef0123
    """
    body = api.call("GET", f"/api/v1/campaigns/{campaign_id}")

    def human() -> None:
        click.echo(_state_line(body))
        for name, count in body["counts"]["dispositions"].items():
            click.echo(f"  {name:<16}{count}")
        click.echo(f"  attempts        {body['counts']['attempts']}")
        if body.get("next_call_at"):
            click.echo(f"  next call at    {body['next_call_at']}")

    emit(body, as_json=as_json, human=human)


def _transition(action: str, summary: str) -> Any:
    @click.argument("campaign_id")
    @json_option()
    @remote
    def command(api: Api, campaign_id: str, as_json: bool, **query: Any) -> None:
        body = api.call("POST", f"/api/v1/campaigns/{campaign_id}/{action}", query=query)
        emit(body, as_json=as_json, human=lambda: click.echo(f"{body['id']} {body['status']}"))

    command.__doc__ = (
        f"{summary}\n\n\b\nExample:\n  callbridge campaign {action} cmp_0123456789abcdef0123\n"
    )
    return command


campaign.command("start")(_transition("start", "Start a draft: running now, or scheduled."))
campaign.command("pause")(_transition("pause", "Stop new dials; live calls finish."))
campaign.command("resume")(_transition("resume", "Dial again after a pause."))
campaign.command("cancel")(
    click.option("--hangup", is_flag=True, default=None, help="hang up live calls too")(
        _transition("cancel", "Stop for good: queued contacts become cancelled.")
    )
)


@campaign.command("watch")
@click.argument("campaign_id")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="seconds between redraws",
)
@click.option("--timeout", type=click.FloatRange(min=0), help="give up after this many seconds")
@json_option("print the final state as one JSON document (the live view goes to stderr)")
@remote
def campaign_watch(
    api: Api, campaign_id: str, interval: float, timeout: float | None, as_json: bool
) -> None:
    """Watch a campaign live until it ends: progress, dispositions, calls per minute, live calls,
    the next call time and attention items.

    Exit status: 0 completed, 1 cancelled (or an error), 3 completed with attention items.

    \b
    Example:
      callbridge campaign watch cmp_0123456789abcdef0123 && echo done
    """
    console = _console(as_json)
    outcome = watch(api, campaign_id, console, interval=interval, timeout=timeout)
    emit(outcome.summary(), as_json=as_json, human=lambda: print_summary(console, outcome))
    sys.exit(outcome.exit_code)


def _write_export(api: Api, campaign_id: str, output: Path | None) -> bytes | None:
    """The API's CSV export, byte for byte, to a file (returns None) or in memory."""
    with api.stream(f"/api/v1/campaigns/{campaign_id}/export.csv") as response:
        if output is None:
            return response.read()
        with output.open("wb") as out:
            while chunk := response.read(64 * 1024):
                out.write(chunk)
    return None


@campaign.command("export")
@click.argument("campaign_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the CSV to this file (default: stdout)",
)
@json_option("print the rows as a JSON list instead of CSV")
@remote
def campaign_export(api: Api, campaign_id: str, output: Path | None, as_json: bool) -> None:
    """Every contact with its outcome, as the API's CSV export.

    \b
    Example:
      callbridge campaign export cmp_0123456789abcdef0123 -o results.csv
    """
    if as_json:
        raw = _write_export(api, campaign_id, None) or b""
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
        if output is not None:
            output.write_text(json.dumps(rows, indent=2), encoding="utf-8")
            note(f"wrote {len(rows)} rows to {output}")
        else:
            click.echo(json.dumps(rows, indent=2))
        return
    if output is not None:
        _write_export(api, campaign_id, output)
        note(f"wrote {output}")
        return
    sys.stdout.buffer.write(_write_export(api, campaign_id, None) or b"")
    sys.stdout.buffer.flush()


# ---- call -------------------------------------------------------------------------------------


def _variables(pairs: tuple[str, ...]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageFailure(f"--var {pair!r} is not name=value")
        variables[name] = value
    return variables


@click.command("call")
@click.argument("to")
@click.option("--agent", help="the agent (default: the campaign's)")
@click.option("from_number", "--from", help="caller id, E.164")
@click.option("--campaign", "campaign_id", help="the campaign it joins (default: the agent's own)")
@click.option(
    "--at",
    "call_at",
    help="when: ISO 8601 with an offset, or without one for the recipient's own time",
)
@click.option("--idempotency-key", help="a repeat with the same key returns the same call")
@click.option(
    "--var", "variables", multiple=True, help="a dynamic variable name=value (repeatable)"
)
@json_option()
@remote
def call(
    api: Api,
    to: str,
    agent: str | None,
    from_number: str | None,
    campaign_id: str | None,
    call_at: str | None,
    idempotency_key: str | None,
    variables: tuple[str, ...],
    as_json: bool,
) -> None:
    """Place one call now, or a reminder at a given time.

    \b
    Example:
      callbridge call +14155550100 --agent agent_1 --at 2026-12-01T09:30 \\
        --var first_name=Ada --var appointment='Tue 10:00' --idempotency-key appt-881
    """
    body: dict[str, Any] = {"to": to, "dynamic_variables": _variables(variables)}
    extra = {"agent_id": agent, "from_number": from_number, "campaign_id": campaign_id}
    body.update({k: v for k, v in {**extra, "call_at": call_at}.items() if v is not None})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    answer = api.call("POST", "/api/v1/calls", body=body, headers=headers)
    when = answer.get("call_at") or "now"
    emit(
        answer,
        as_json=as_json,
        human=lambda: click.echo(f"{answer['id']} {answer['state']} ({when})"),
    )


# ---- dnc --------------------------------------------------------------------------------------


@click.group()
def dnc() -> None:
    """Do-not-call lists: the global one, or a campaign's (--campaign).

    \b
    Example:
      callbridge dnc add +14155550100 --reason 'asked by phone'
    """


def _scope_options(f: Any) -> Any:
    f = click.option(
        "--default-region",
        default="US",
        show_default=True,
        help="region of numbers written without +country",
    )(f)
    return click.option("--campaign", "campaign_id", help="a campaign's list (default: global)")(f)


@dnc.command("add")
@click.argument("number")
@_scope_options
@click.option("--reason", help="why (kept with the entry)")
@json_option()
@remote
def dnc_add(
    api: Api,
    number: str,
    campaign_id: str | None,
    default_region: str,
    reason: str | None,
    as_json: bool,
) -> None:
    """Put a number on a do-not-call list.

    \b
    Example:
      callbridge dnc add '(415) 555-0100' --campaign cmp_0123456789abcdef0123
    """
    body = {
        "phone_number": number,
        "campaign_id": campaign_id,
        "reason": reason,
        "default_region": default_region,
    }
    entry = api.call("POST", "/api/v1/dnc", body={k: v for k, v in body.items() if v is not None})
    emit(entry, as_json=as_json, human=lambda: click.echo(f"listed {entry['phone_number']}"))


@dnc.command("remove")
@click.argument("number")
@_scope_options
@json_option()
@remote
def dnc_remove(
    api: Api, number: str, campaign_id: str | None, default_region: str, as_json: bool
) -> None:
    """Take a number off a do-not-call list.

    \b
    Example:
      callbridge dnc remove +14155550100
    """
    query = {"campaign_id": campaign_id, "default_region": default_region}
    api.call("DELETE", f"/api/v1/dnc/{_path(number)}", query=query)
    emit(
        {"phone_number": number, "removed": True},
        as_json=as_json,
        human=lambda: click.echo(f"removed {number}"),
    )


@dnc.command("check")
@click.argument("number")
@_scope_options
@json_option()
@remote
def dnc_check(
    api: Api, number: str, campaign_id: str | None, default_region: str, as_json: bool
) -> None:
    """Is a number on the global list (or a campaign's)? Exit status 0 either way: read the
    answer (or `.listed` with --json).

    \b
    Example:
      callbridge dnc check +14155550100 --json | jq .listed
    """
    query = {"campaign_id": campaign_id, "default_region": default_region}
    answer = api.call("GET", f"/api/v1/dnc/{_path(number)}", query=query)
    emit(
        answer,
        as_json=as_json,
        human=lambda: click.echo(
            f"{answer['phone_number']} {'listed' if answer['listed'] else 'not listed'}"
        ),
    )


@dnc.command("import")
@click.argument("csv_file", type=CSV_FILE)
@_scope_options
@json_option()
@remote
def dnc_import(
    api: Api, csv_file: Path, campaign_id: str | None, default_region: str, as_json: bool
) -> None:
    """Import a CSV of numbers (column phone_number, optional reason): all of it or nothing.

    \b
    Example:
      callbridge dnc import opt-outs.csv
    """
    with csv_file.open("rb") as source:
        report = api.call(
            "POST",
            "/api/v1/dnc",
            data=source,
            content_type="text/csv",
            query={"campaign_id": campaign_id, "default_region": default_region},
            headers={"Content-Length": str(os.fstat(source.fileno()).st_size)},
        )
    emit(
        report,
        as_json=as_json,
        human=lambda: click.echo(
            f"rows {report['rows']}  added {report['added']}  already listed "
            f"{report['already_listed']}  rejected {report['rejected']}"
        ),
    )


@dnc.command("export")
@click.option("--campaign", "campaign_id", help="a campaign's list (default: global)")
@json_option("print the entries as a JSON list instead of CSV")
@remote
def dnc_export(api: Api, campaign_id: str | None, as_json: bool) -> None:
    """Write a do-not-call list as CSV (phone_number, reason, created_at), which `dnc import` reads.

    \b
    Example:
      callbridge dnc export > opt-outs.csv
    """
    entries = api.page_all("/api/v1/dnc", {"campaign_id": campaign_id})
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["phone_number", "reason", "created_at"])
    for entry in entries:
        reason = entry.get("reason") or ""
        # A reason is free text: one starting like a formula opens as text in a spreadsheet.
        if reason[:1] in ("=", "+", "-", "@"):
            reason = "'" + reason
        out.writerow([entry["phone_number"], reason, entry.get("created_at")])


def _path(number: str) -> str:
    from urllib.parse import quote

    return quote(number, safe="")


# ---- webhooks ---------------------------------------------------------------------------------


@click.group()
def webhooks() -> None:
    """Outgoing webhook subscriptions, their deliveries and a test event (an admin key).

    \b
    Example:
      callbridge webhooks add https://example.com/hooks --event call.completed
    """


@webhooks.command("list")
@json_option()
@remote
def webhooks_list(api: Api, as_json: bool) -> None:
    """List subscriptions.

    \b
    Example:
      callbridge webhooks list --json
    """
    rows = api.page_all("/api/v1/webhooks")
    emit(
        rows,
        as_json=as_json,
        human=lambda: [click.echo(f"{r['id']}  {','.join(r['events'])}  {r['url']}") for r in rows],
    )


@webhooks.command("add")
@click.argument("target_url", metavar="URL")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    type=click.Choice(["call.completed", "contact.finished", "campaign.completed"]),
    help="an event to send (repeatable)",
)
@click.option("--secret", help="the signing secret (default: generated, shown once)")
@json_option()
@remote
def webhooks_add(
    api: Api, target_url: str, events: tuple[str, ...], secret: str | None, as_json: bool
) -> None:
    """Subscribe a URL to events; the answer holds the signing secret (shown once).

    \b
    Example:
      callbridge webhooks add https://crm.example.com/callbridge --event contact.finished
    """
    body: dict[str, Any] = {"url": target_url, "events": list(events)}
    if secret:
        body["secret"] = secret
    made = api.call("POST", "/api/v1/webhooks", body=body)

    def human() -> None:
        click.echo(made["id"])
        if made.get("secret"):
            note(f"signing secret: {made['secret']} (store it now)")

    emit(made, as_json=as_json, human=human)


@webhooks.command("deliveries")
@click.argument("subscription_id")
@json_option()
@remote
def webhooks_deliveries(api: Api, subscription_id: str, as_json: bool) -> None:
    """A subscription's deliveries, newest first.

    \b
    Example:
      callbridge webhooks deliveries wh_0123456789abcdef0123
    """
    rows = api.page_all(f"/api/v1/webhooks/{subscription_id}/deliveries")
    emit(
        rows,
        as_json=as_json,
        human=lambda: [
            click.echo(
                f"{r['id']}  {r['event_type']:<18} {r['status']:<9} attempts {r['attempts']}"
                f"  {r.get('last_status_code') or ''}"
            )
            for r in rows
        ],
    )


# ---- run --------------------------------------------------------------------------------------


@click.command("run")
@click.argument("csv_file", type=CSV_FILE)
@policy_options
@click.option("--phone-column", help="the CSV's phone column (default: phone_number)")
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="where the export goes (default: <csv name>-results.csv)",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="seconds between redraws",
)
@json_option("print one JSON summary at the end (everything else goes to stderr)")
@remote
def run(
    api: Api,
    csv_file: Path,
    phone_column: str | None,
    yes: bool,
    output: Path | None,
    interval: float,
    as_json: bool,
    **flags: Any,
) -> None:
    """Call everyone in a CSV: validate it, show the intake report, confirm, create, start and
    watch the campaign, then print the summary and write the export.

    Exit status: 0 completed, 1 failed or cancelled, 3 completed with attention items.

    \b
    Example:
      callbridge run contacts.csv --agent agent_1 --from +14155550100 \\
        --window 'mon-fri 09:00-17:00' --timezone America/New_York --us-tcpa --yes
    """
    body = campaign_body(csv_file.stem, flags)
    with csv_file.open("rb") as source:
        preview = api.call(
            "POST",
            "/api/v1/dashboard/intake-preview",
            data=source,
            content_type="text/csv",
            query={
                "default_region": body.get("default_region", "US"),
                "phone_column": phone_column,
            },
            headers={"Content-Length": str(os.fstat(source.fileno()).st_size)},
        )
    _intake_lines(preview)
    if not preview["accepted"]:
        raise Failure(f"{csv_file}: no row can be called; nothing was created")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageFailure("give --yes to run without a terminal to confirm on")
        if not click.confirm(f"Call {preview['accepted']} contacts?", err=True):
            raise Failure("not confirmed; nothing was created")
    created, report = create_campaign(api, body, csv_file, phone_column)
    assert report is not None
    campaign_id = created["id"]
    note(f"campaign {campaign_id} created; starting")
    api.call("POST", f"/api/v1/campaigns/{campaign_id}/start")
    console = _console(as_json)
    outcome: Outcome = watch(api, campaign_id, console, interval=interval, timeout=None)
    target = output or Path(f"{csv_file.stem}-results.csv")
    _write_export(api, campaign_id, target)
    summary = {**outcome.summary(), "intake": report, "export": str(target)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_summary(console, outcome)
        note(f"export written to {target}")
    sys.exit(outcome.exit_code)


@webhooks.command("test")
@click.argument("subscription_id")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=15,
    show_default=True,
    help="seconds to wait for the first try's answer (0: queue it and return)",
)
@json_option()
@remote
def webhooks_test(api: Api, subscription_id: str, wait: float, as_json: bool) -> None:
    """Send a subscription a signed test event (type webhook.test) and show how its receiver
    answered. Exit status 0 if it took the event, 1 if not (yet).

    \b
    Example:
      callbridge webhooks test wh_0123456789abcdef0123
    """
    delivery = api.call("POST", f"/api/v1/webhooks/{subscription_id}/test")
    path = f"/api/v1/webhooks/{subscription_id}/deliveries/{delivery['id']}"
    deadline = time.monotonic() + wait
    while delivery["status"] == "pending" and not delivery["attempts"]:
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)  # the first try is moments away: polled, with the deadline above
        delivery = api.call("GET", path)
    answer = delivery.get("last_status_code")

    def human() -> None:
        if delivery["status"] == "delivered":
            click.echo(f"{delivery['id']} delivered (HTTP {answer})")
        elif delivery["attempts"]:
            click.echo(f"{delivery['id']} not taken: {delivery.get('last_error') or answer}")
        else:
            click.echo(f"{delivery['id']} queued, not tried yet")

    emit(delivery, as_json=as_json, human=human)
    if delivery["status"] != "delivered":
        sys.exit(1)
