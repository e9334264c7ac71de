"""What happens to a sandbox call, decided by the last two digits of the dialled number.

The table is data so that the documentation, the simulation and the tests read the same rules:
a number ending in 00-59 is a person, 60-69 a voicemail box, and so on. Some ranges change with
the attempt number so that retry logic can be rehearsed end to end (busy first, then answered).
Some numbers (FOLLOW_UP_TABLE) are people who ask, once they answer, for a follow-up: a callback,
another number, or never to be called again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone


@dataclass(frozen=True)
class SimulatedOutcome:
    """How one call attempt ends, in Twilio's own vocabulary."""

    name: str
    # The terminal CallStatus: completed, busy, no-answer or failed.
    final_status: str
    # Whether the phone rings at all (a failed call never reaches the network).
    rings: bool
    # AnsweredBy per MachineDetection mode; empty when nobody picks up.
    answered_by: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sip_response_code: int = 200
    error_code: str | None = None
    # How long answering machine detection took to decide, reported as MachineDetectionDuration.
    amd_duration_ms: int = 0

    @property
    def answered(self) -> bool:
        return self.final_status == "completed"

    def answered_by_for(self, machine_detection: str | None) -> str | None:
        """AnsweredBy as Twilio reports it; None when detection was not asked for."""
        if not machine_detection or not self.answered:
            return None
        return self.answered_by.get(machine_detection, "unknown")


HUMAN = SimulatedOutcome(
    name="human",
    final_status="completed",
    rings=True,
    answered_by=MappingProxyType({"Enable": "human", "DetectMessageEnd": "human"}),
    amd_duration_ms=1850,
)
VOICEMAIL = SimulatedOutcome(
    name="voicemail",
    final_status="completed",
    rings=True,
    answered_by=MappingProxyType(
        {"Enable": "machine_start", "DetectMessageEnd": "machine_end_beep"}
    ),
    amd_duration_ms=4120,
)
NO_ANSWER = SimulatedOutcome(
    name="no-answer", final_status="no-answer", rings=True, sip_response_code=487
)
BUSY = SimulatedOutcome(name="busy", final_status="busy", rings=True, sip_response_code=486)
FAILED = SimulatedOutcome(
    name="failed", final_status="failed", rings=False, sip_response_code=500, error_code="31005"
)


@dataclass(frozen=True)
class OutcomeRule:
    """Numbers whose last two digits fall in [first, last] get `by_attempt[n - 1]` on attempt n.

    The last entry repeats for every later attempt.
    """

    first: int
    last: int
    by_attempt: tuple[SimulatedOutcome, ...]
    description: str
    # The person calls the number that called them back this long after a call of theirs
    # ended at their voicemail (None: they never call back).
    calls_back_after_seconds: float | None = None

    def covers(self, suffix: int) -> bool:
        return self.first <= suffix <= self.last

    def outcome_for(self, attempt_number: int) -> SimulatedOutcome:
        index = min(max(attempt_number, 1), len(self.by_attempt)) - 1
        return self.by_attempt[index]


OUTCOME_TABLE: tuple[OutcomeRule, ...] = (
    OutcomeRule(0, 59, (HUMAN,), "a human answers"),
    OutcomeRule(60, 69, (VOICEMAIL,), "voicemail"),
    OutcomeRule(70, 79, (NO_ANSWER,), "no answer"),
    OutcomeRule(80, 84, (BUSY,), "busy"),
    OutcomeRule(85, 89, (FAILED,), "failed"),
    OutcomeRule(90, 94, (BUSY, HUMAN), "busy on the first attempt, a human answers on later ones"),
    OutcomeRule(
        95,
        99,
        (NO_ANSWER, NO_ANSWER, VOICEMAIL),
        "no answer on the first two attempts, voicemail on later ones",
    ),
)


# People who call back, keyed by the last FOUR digits (the table above reads the last two):
# 555-0260..0269 is outside the 555-01xx range every other rule is rehearsed with.
CALL_BACK_TABLE: tuple[OutcomeRule, ...] = (
    OutcomeRule(
        260,
        269,
        (VOICEMAIL, HUMAN),
        "voicemail on the first attempt, then the person calls back 5 s later "
        "(a human answers later attempts)",
        calls_back_after_seconds=5.0,
    ),
)


def number_suffix(number: str, digits_wanted: int = 2) -> int:
    """The last two (or ``digits_wanted``) digits of a phone number as an integer
    (``+14155550163`` -> 63)."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) < digits_wanted:
        raise ValueError(f"a phone number needs at least {digits_wanted} digits")
    return int(digits[-digits_wanted:])


def rule_for(number: str) -> OutcomeRule:
    if sum(ch.isdigit() for ch in number) >= 4:
        long_suffix = number_suffix(number, 4)
        for rule in CALL_BACK_TABLE:
            if rule.covers(long_suffix):
                return rule
    suffix = number_suffix(number)
    for rule in OUTCOME_TABLE:
        if rule.covers(suffix):
            return rule
    raise LookupError(f"no sandbox outcome for numbers ending in {suffix:02d}")


def planned_outcome(to: str, attempt_number: int) -> SimulatedOutcome:
    """The outcome of the `attempt_number`-th call (1-based) the sandbox places to `to`."""
    return rule_for(to).outcome_for(attempt_number)


# -- what the person asks for -------------------------------------------------------------------

# The words a person's follow-up request is said in (agent_audio carries them to the agent):
# "<item>=<value>", the item named as the agent's data collection names it.
CALLBACK_ITEM = "callback_time"
REDIRECT_ITEM = "redirect_phone_number"
STOP_ITEM = "stop"
# A callback asked for this long after the call is answered: the call and its report are over
# by then, so the callback is the lead's next call.
CALLBACK_AFTER_SECONDS = 20
# A callback asked for at this local hour of the next day: outside any usual calling hours.
NIGHT_HOUR = 3
# What an invalid redirect names: too short to be a number anywhere.
INVALID_NUMBER = "555-01"
# A redirect goes to the dialled number with its last four digits replaced: 0320 -> 0420, which
# a person answers and asks for nothing.
REDIRECT_SHIFT = 100


@dataclass(frozen=True)
class FollowUpRule:
    """Numbers whose last FOUR digits fall in [first, last] ask, in every answered call, for a
    follow-up of ``kind`` (callback, callback_at_night, redirect, redirect_invalid or stop)."""

    first: int
    last: int
    kind: str
    description: str

    def covers(self, suffix: int) -> bool:
        return self.first <= suffix <= self.last


# 555-0300..0349: outside the 555-01xx and 555-026x ranges; a person answers them (last two
# digits 00-49) and says what they ask for.
FOLLOW_UP_TABLE: tuple[FollowUpRule, ...] = (
    FollowUpRule(
        300,
        309,
        "callback",
        f"asks to be called back {CALLBACK_AFTER_SECONDS} s later, said as local wall-clock time",
    ),
    FollowUpRule(
        310, 319, "callback_at_night", f"asks to be called back at {NIGHT_HOUR:02d}:00 local time"
    ),
    FollowUpRule(320, 329, "redirect", "asks to be called on the number ending 04xx instead"),
    FollowUpRule(330, 339, "redirect_invalid", f"asks to be called on {INVALID_NUMBER!r}"),
    FollowUpRule(340, 349, "stop", "asks never to be called again"),
)


def follow_up_rule(number: str) -> FollowUpRule | None:
    if sum(ch.isdigit() for ch in number) < 4:
        return None
    suffix = number_suffix(number, 4)
    return next((rule for rule in FOLLOW_UP_TABLE if rule.covers(suffix)), None)


def follow_up_words(number: str, now: datetime) -> str | None:
    """What the person on ``number`` asks for when they answer at ``now``, as they say it:
    ``<item>=<value>``; None when they ask for nothing. Times are the person's wall-clock time
    (the first zone of their number), with no zone, as people say them."""
    rule = follow_up_rule(number)
    if rule is None:
        return None
    if rule.kind in ("callback", "callback_at_night"):
        zones = [z for z in timezone.time_zones_for_number(phonenumbers.parse(number)) if "/" in z]
        local_now = now.astimezone(ZoneInfo(zones[0] if zones else "UTC"))
        if rule.kind == "callback":
            wanted = local_now + timedelta(seconds=CALLBACK_AFTER_SECONDS)
        else:
            wanted = datetime.combine(local_now.date() + timedelta(days=1), time(NIGHT_HOUR))
        return f"{CALLBACK_ITEM}={wanted.replace(tzinfo=None, microsecond=0).isoformat()}"
    if rule.kind == "redirect":
        head, tail = number[:-4], number_suffix(number, 4)
        return f"{REDIRECT_ITEM}={head}{tail + REDIRECT_SHIFT:04d}"
    if rule.kind == "redirect_invalid":
        return f"{REDIRECT_ITEM}={INVALID_NUMBER}"
    return f"{STOP_ITEM}=true"
