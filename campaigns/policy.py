"""When a contact may be called next, and what an ended attempt means for it.

Every instant planned here satisfies, at once: the campaign's start and end, the contact's own
``call_at``, the retry delay, the calling windows in every candidate zone of the number, and the
caps on calls per local day and per rolling 24 hours.

Short retries (``max_short_retries``) are counted per calling window (windows.window_at): once a
window has had 1 + max_short_retries calls of a contact, its next call waits for a later window.
A call pushed into a later window (by that, or because its delay ran past the window's close)
lands where ``interval_placement`` says: at the window's start, at a random instant inside it,
or rotated: ``rotate_step_seconds`` past where, in its own window, the last call failed,
wrapping round inside the new window.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from campaigns.compliance import rule_for, rule_windows
from campaigns.failures import ErrorClass
from campaigns.models import Campaign, Contact, Disposition
from campaigns.phones import ANY_NUMBER_TYPE, normalize, own_time_zones
from campaigns.windows import (
    Span,
    Window,
    WindowError,
    is_open,
    next_open,
    parse_periods,
    window_at,
    zone,
)

RETRY_OUTCOMES = (
    Disposition.BUSY,
    Disposition.NO_ANSWER,
    Disposition.FAILED,
    Disposition.VOICEMAIL,
)
VOICEMAIL_POLICIES = ("hang_up", "leave_message", "agent")
PLACEMENTS = ("start", "random", "rotate")
# Random placements are not meant to be reproduced: no seed to share between nodes.
_RANDOM = random.SystemRandom()
# A plan gives up after this many window/cap adjustments (each moves the instant forward).
MAX_PLAN_STEPS = 50


class PolicyError(ValueError):
    """Campaign rules that cannot be applied: refused when the campaign is created."""


@dataclass(frozen=True)
class RetryRule:
    retry: bool
    delays: tuple[int, ...]

    def delay_for(self, retry_number: int) -> int:
        """Seconds before the ``retry_number``-th retry (1-based); the last delay repeats."""
        return self.delays[min(retry_number, len(self.delays)) - 1]


@dataclass(frozen=True)
class Retry:
    at: datetime


@dataclass(frozen=True)
class Final:
    disposition: str


def default_retry_rules(retry_delay_seconds: int) -> dict[str, RetryRule]:
    rules = {o: RetryRule(True, (retry_delay_seconds,)) for o in RETRY_OUTCOMES}
    rules[Disposition.VOICEMAIL] = RetryRule(False, (retry_delay_seconds,))
    return rules


def parse_retry_rules(raw: Any, retry_delay_seconds: int) -> dict[str, RetryRule]:
    """``{outcome: {"retry": bool, "delays": [s, ...] | "delay": s}}`` over the defaults."""
    rules = default_retry_rules(retry_delay_seconds)
    if raw is None:
        return rules
    if not isinstance(raw, dict):
        raise PolicyError("retry_rules must be an object keyed by outcome")
    for outcome, spec in raw.items():
        if outcome not in RETRY_OUTCOMES:
            raise PolicyError(f"retry_rules: unknown outcome {outcome!r} (use {RETRY_OUTCOMES})")
        if not isinstance(spec, dict) or not isinstance(spec.get("retry", True), bool):
            raise PolicyError(f"retry_rules.{outcome} must be {{retry: bool, delays: [...]}}")
        delays = spec.get("delays", [spec["delay"]] if "delay" in spec else None)
        if delays is None:
            delays = list(rules[outcome].delays)
        if (
            not isinstance(delays, list)
            or not delays
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in delays)
        ):
            raise PolicyError(f"retry_rules.{outcome}.delays must be non-negative seconds")
        rules[outcome] = RetryRule(spec.get("retry", True), tuple(delays))
    return rules


def retry_rules_json(rules: dict[str, RetryRule]) -> dict[str, Any]:
    return {o: {"retry": r.retry, "delays": list(r.delays)} for o, r in rules.items()}


def validate_campaign_rules(campaign: Campaign) -> None:
    """Refuse rules that can never be satisfied, with a message that says which."""
    try:
        zone(campaign.timezone)
        parse_periods(campaign.calling_periods)
    except WindowError as exc:
        raise PolicyError(str(exc)) from exc
    if campaign.rule_set not in (None, "us_tcpa"):
        raise PolicyError("rule_set must be null or 'us_tcpa'")
    parse_retry_rules(campaign.retry_rules, campaign.retry_delay_seconds)
    if campaign.start_at and campaign.end_at and campaign.end_at <= campaign.start_at:
        raise PolicyError("end_at must be after start_at")
    if campaign.voicemail_policy not in VOICEMAIL_POLICIES:
        raise PolicyError(f"voicemail_policy must be one of {', '.join(VOICEMAIL_POLICIES)}")
    if campaign.voicemail_policy == "leave_message" and not campaign.voicemail_message:
        raise PolicyError("voicemail_policy leave_message needs a voicemail_message")
    _validate_placement(campaign)


def _validate_placement(campaign: Campaign) -> None:
    if campaign.max_short_retries is not None and campaign.max_short_retries < 0:
        raise PolicyError("max_short_retries must be 0 or more")
    if campaign.interval_placement not in (None, *PLACEMENTS):
        raise PolicyError(f"interval_placement must be one of {', '.join(PLACEMENTS)}")
    step = campaign.rotate_step_seconds
    if step is not None and step < 0:
        raise PolicyError("rotate_step_seconds must be 0 or more")
    if campaign.interval_placement == "rotate" and step is None:
        raise PolicyError("interval_placement rotate needs rotate_step_seconds")


def zones_for(campaign: Campaign, contact: Contact) -> list[str]:
    """The zones whose local time the contact's windows are read in.

    A number with no zone of its own (unknown, toll-free, or zones spanning a whole country)
    follows the campaign's zone. Stored zones go through the same rule again, so that contacts
    imported before it (a toll-free number with 42 zones) are treated the same way.
    """
    zones = own_time_zones(contact.time_zones or ())
    if contact.number_index:
        # An alternate number may be somewhere else entirely.
        zones = normalize(contact.current_number, "US", ANY_NUMBER_TYPE).time_zones
    return list(zones) or [campaign.timezone]


def windows_for(campaign: Campaign, phone_number: str) -> list[Window]:
    windows = rule_windows(campaign.rule_set, phone_number)
    if campaign.calling_periods is not None:
        windows.append(parse_periods(campaign.calling_periods))
    return windows


@dataclass(frozen=True)
class CallingHours:
    """When one contact may be dialled: every window in every zone, and before the campaign's end.

    Worked out when a dial is claimed and again just before it (the geocoder behind us_tcpa is
    not free), then asked about the instants of the dial itself, right before it leaves.
    """

    windows: tuple[Window, ...]
    zones: tuple[str, ...]
    end_at: datetime | None

    def closed_at(self, first: datetime, last: datetime) -> datetime | None:
        """The first of ``first`` and ``last`` at which no dial may reach the provider; None if
        it may at both.

        Looking at the two ends is enough for the spans this is asked about (under a minute):
        periods start and end on whole minutes of local time, and a daylight-saving change moves
        the clock by half an hour at least, so a window never closes and reopens in between.
        """
        for instant in (first, last):
            if self.end_at is not None and instant >= self.end_at:
                return instant
            if self.windows and not is_open(self.windows, self.zones, instant):
                return instant
        return None


def calling_hours(campaign: Campaign, contact: Contact) -> CallingHours:
    return CallingHours(
        windows=tuple(windows_for(campaign, contact.current_number)),
        zones=tuple(zones_for(campaign, contact)),
        end_at=campaign.end_at,
    )


def plan(
    campaign: Campaign,
    contact: Contact,
    earliest: datetime,
    dials: Sequence[datetime] = (),
) -> datetime | None:
    """The earliest instant >= ``earliest`` the contact may be dialled; None if there is none."""
    at = max(earliest, campaign.start_at or earliest)
    if contact.call_at is not None and contact.attempts_made == 0:
        at = max(at, contact.call_at)
    zones = zones_for(campaign, contact)
    windows = windows_for(campaign, contact.current_number)
    rule = rule_for(campaign.rule_set, contact.current_number)
    rolling_cap = rule.max_calls_per_24h if rule else None
    for _ in range(MAX_PLAN_STEPS):
        opened = next_open(windows, zones, at) if windows else at
        if opened is None:
            return None
        at = opened
        moved = _after_caps(campaign, zones, at, dials, rolling_cap)
        if moved == at:
            break
        at = moved
    else:
        return None
    if campaign.end_at is not None and at >= campaign.end_at:
        return None
    return at


def _after_caps(
    campaign: Campaign,
    zones: list[str],
    at: datetime,
    dials: Sequence[datetime],
    rolling_cap: int | None,
) -> datetime:
    """``at``, or the first instant after it at which no cap is reached."""
    if campaign.max_attempts_per_day:
        # The day is the recipient's: counted in every candidate zone, strictest wins.
        for name in zones:
            tz = zone(name)
            day = at.astimezone(tz).date()
            if sum(d.astimezone(tz).date() == day for d in dials) >= campaign.max_attempts_per_day:
                midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
                return midnight.astimezone(at.tzinfo)
    if rolling_cap:
        recent = sorted(d for d in dials if at - timedelta(hours=24) < d <= at)
        if len(recent) >= rolling_cap:
            return recent[len(recent) - rolling_cap] + timedelta(hours=24)
    return at


def next_number_after_failure(campaign: Campaign, contact: Contact, outcome: str) -> None:
    """Count a failure on the number in use; after too many in a row, move to the next one."""
    if outcome not in (Disposition.BUSY, Disposition.NO_ANSWER, Disposition.FAILED):
        return
    contact.failures_on_number = (contact.failures_on_number or 0) + 1
    alternates = contact.alternate_numbers or []
    if contact.failures_on_number >= campaign.max_failures_per_number and (
        (contact.number_index or 0) < len(alternates)
    ):
        contact.number_index = (contact.number_index or 0) + 1
        contact.failures_on_number = 0


def uses_windows(campaign: Campaign) -> bool:
    """Whether the next call depends on the calls made in the last one's window."""
    return campaign.max_short_retries is not None or campaign.interval_placement is not None


def place(
    window: Span, placement: str | None, anchor_seconds: float, step: int, rng: random.Random
) -> datetime:
    """Where in ``window`` a call pushed into it lands.

    ``anchor_seconds`` is how far into its own window the last call was placed; rotation moves
    ``step`` seconds past it, wrapping round inside this window. Offsets are whole seconds, so
    the latest is a second before the close (windows last whole minutes).
    """
    length = int((window.end - window.start).total_seconds())
    if length <= 0:
        return window.start
    if placement == "random":
        offset = rng.randrange(length)
    elif placement == "rotate":
        offset = (int(anchor_seconds) + step) % length
    else:
        offset = 0
    return window.start + timedelta(seconds=offset)


def _next_in_windows(
    campaign: Campaign,
    contact: Contact,
    earliest: datetime,
    dials: Sequence[datetime],
    rng: random.Random,
) -> datetime | None:
    """The next call's instant under short retries per window and interval placement."""
    windows = windows_for(campaign, contact.current_number)
    zones = zones_for(campaign, contact)
    last = max(dials, default=None)
    current = window_at(windows, zones, last) if last is not None else None
    if current is not None and campaign.max_short_retries is not None:
        calls_here = sum(d in current for d in dials)
        if calls_here > campaign.max_short_retries:
            # The window's short retries are spent: the next call is in a later window.
            earliest = max(earliest, current.end)
    at = plan(campaign, contact, earliest, dials)
    if at is None or campaign.interval_placement in (None, "start"):
        return at
    later = window_at(windows, zones, at)
    if later is None or later.start != at or (current is not None and at < current.end):
        # Not pushed to a window's opening: the retry delay alone placed it.
        return at
    anchor = (last - current.start).total_seconds() if current and last else 0.0
    placed = place(
        later, campaign.interval_placement, anchor, campaign.rotate_step_seconds or 0, rng
    )
    # Caps and the campaign's end still apply; the opening is kept if they rule it out.
    return plan(campaign, contact, placed, dials) or at


def after_attempt(
    campaign: Campaign,
    contact: Contact,
    outcome: str,
    now: datetime,
    error_class: str | None = None,
    dials: Sequence[datetime] = (),
    rng: random.Random | None = None,
) -> Retry | Final:
    """Decide the contact's next step once an attempt has ended with ``outcome``.

    ``dials`` are the instants of the contact's calls so far, this one included (needed for
    caps and for short retries per window). ``error_class`` is the failure's ErrorClass, if any.
    """
    if error_class in ErrorClass.PERMANENT:
        return Final(outcome)
    rule = parse_retry_rules(campaign.retry_rules, campaign.retry_delay_seconds).get(outcome)
    if rule is None or not rule.retry or contact.attempts_made >= campaign.max_attempts:
        return Final(outcome)
    if (
        campaign.end_after_number_failures
        and (contact.failures_on_number or 0) >= campaign.max_failures_per_number
    ):
        # next_number_after_failure found no further number to move to.
        return Final(outcome)
    earliest = now + timedelta(seconds=rule.delay_for(contact.attempts_made))
    if uses_windows(campaign):
        at = _next_in_windows(campaign, contact, earliest, dials, rng or _RANDOM)
    else:
        at = plan(campaign, contact, earliest, dials)
    if at is None:
        return Final(Disposition.EXPIRED)
    return Retry(at)
