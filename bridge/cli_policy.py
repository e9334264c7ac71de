"""A campaign's policy from a YAML or JSON file and from flags, as the API's create body."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import yaml

from bridge.cli_common import UsageFailure

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # the API's weekdays: Monday = 0

# Friendlier names a policy file may use, and the API's field each stands for.
ALIASES = {
    "agent": "agent_id",
    "from": "from_number",
    "retry_delay": "retry_delay_seconds",
    "retries": "retry_rules",
    "voicemail": "voicemail_policy",
    "agent_mode": "agent_connection",
    "windows": "calling_periods",
    "ring_timeout": "ring_timeout_seconds",
    "time_limit": "time_limit_seconds",
}
# Every field of the API's CampaignCreate body (bridge/api/campaign_schemas.py): anything else in a
# policy file is a typo, refused before anything is created.
FIELDS = {
    "name",
    "agent_id",
    "from_number",
    "default_region",
    "max_attempts",
    "retry_delay_seconds",
    "concurrency",
    "cps",
    "machine_detection",
    "ring_timeout_seconds",
    "time_limit_seconds",
    "start_at",
    "agent_connection",
    "agent_phone_number_id",
    "end_at",
    "timezone",
    "calling_periods",
    "rule_set",
    "retry_rules",
    "max_attempts_per_day",
    "max_failures_per_number",
    "voicemail_policy",
    "voicemail_message",
    "schedule_cron",
    "schedule_list",
    "allowed_number_types",
}

_WINDOW = re.compile(r"^\s*([a-z,\-]+)\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")


def parse_window(text: str) -> dict[str, Any]:
    """`mon-fri 09:00-17:00`, `sat,sun 10:00-14:00` or `daily 09:00-20:00` as a calling period."""
    match = _WINDOW.match(text.lower())
    if not match:
        raise ValueError(f"window {text!r} is not like 'mon-fri 09:00-17:00'")
    days, start, end = match.groups()
    weekdays: set[int] = set()
    for part in days.split(","):
        if part in ("daily", "every"):
            weekdays.update(range(7))
            continue
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"window {text!r}: days are mon..sun, e.g. 'mon-fri' or 'sat,sun'")
        a, b = DAYS.index(first), DAYS.index(last or first)
        # A range may wrap the week: fri-mon is Friday to Monday.
        weekdays.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return {"weekdays": sorted(weekdays), "start": start.zfill(5), "end": end.zfill(5)}


def load_policy(path: Path) -> dict[str, Any]:
    """A policy file (YAML or JSON) as API fields; refused whole if anything is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageFailure(f"policy file {path}: cannot read it ({exc})") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageFailure(f"policy file {path}: not valid YAML or JSON ({first})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageFailure(f"policy file {path}: expected a mapping of settings at the top")
    try:
        return _fields(raw)
    except ValueError as exc:
        raise UsageFailure(f"policy file {path}: {exc}") from None


def _fields(raw: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key)
        if name == "us_tcpa":
            if value:
                body["rule_set"] = "us_tcpa"
            continue
        if name == "pace":
            if not isinstance(value, dict) or set(value) - {"concurrency", "cps"}:
                raise ValueError("'pace' holds 'concurrency' and/or 'cps'")
            body.update(value)
            continue
        field = ALIASES.get(name, name)
        if field not in FIELDS:
            raise ValueError(f"unknown setting {name!r}")
        if field == "calling_periods" and isinstance(value, list):
            value = [parse_window(v) if isinstance(v, str) else v for v in value]
        if field in ("start_at", "end_at") and value is not None and not isinstance(value, str):
            value = value.isoformat()  # YAML reads an unquoted timestamp as a datetime
        body[field] = value
    return body


def policy_options(f: Any) -> Any:
    """The common policy settings as flags (they override the policy file's keys)."""
    options = [
        click.option(
            "--policy",
            type=click.Path(dir_okay=False, path_type=Path),
            help="a YAML or JSON file of campaign settings (windows, retries, caps, ...)",
        ),
        click.option("--name", help="the campaign's name (default: the CSV's file name)"),
        click.option("--default-region", help="region of numbers written without +country"),
        click.option("--agent", help="the ElevenLabs agent id answering the calls"),
        click.option("from_number", "--from", help="caller id, E.164"),
        click.option("--max-attempts", type=click.IntRange(min=1), help="calls at most"),
        click.option("--retry-delay", type=click.IntRange(min=0), help="seconds between attempts"),
        click.option("--concurrency", type=click.IntRange(min=1), help="live calls at most"),
        click.option("--cps", type=click.FloatRange(min=0, min_open=True), help="calls per second"),
        click.option(
            "--window",
            "windows",
            multiple=True,
            help="calling window in the recipient's time, e.g. 'mon-fri 09:00-17:00' (repeatable)",
        ),
        click.option("--timezone", help="IANA zone for numbers without a zone of their own"),
        click.option(
            "--us-tcpa",
            is_flag=True,
            default=None,
            help="apply the US TCPA hours and state rules (rule_set us_tcpa)",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def campaign_body(default_name: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The create (or update) body: the policy file's settings, then the flags given on top of
    them; ``default_name`` names a campaign that neither names (None: leave the name alone)."""
    body = load_policy(flags["policy"]) if flags.get("policy") else {}
    given = {
        "name": flags.get("name"),
        "default_region": flags.get("default_region"),
        "agent_id": flags.get("agent"),
        "from_number": flags.get("from_number"),
        "max_attempts": flags.get("max_attempts"),
        "retry_delay_seconds": flags.get("retry_delay"),
        "concurrency": flags.get("concurrency"),
        "cps": flags.get("cps"),
        "timezone": flags.get("timezone"),
    }
    body.update({k: v for k, v in given.items() if v is not None})
    if flags.get("windows"):
        try:
            body["calling_periods"] = [parse_window(w) for w in flags["windows"]]
        except ValueError as exc:
            raise UsageFailure(str(exc)) from None
    if flags.get("us_tcpa"):
        body["rule_set"] = "us_tcpa"
    if default_name is not None:
        body.setdefault("name", default_name)
    return body
