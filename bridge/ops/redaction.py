"""What a log line may not show: phone numbers in any format, and credentials.

Numbers: every run of at least ``MIN_PHONE_DIGITS`` digits, written the way people write phone
numbers (``+14155550170``, ``4155550170``, ``(415) 555-0170``, ``415.555.0170``,
``1-415-555-0170``, ``+1 415 555 0170``, also percent-encoded as in a URL: ``%2B1415...``,
``%28415%29%20555-0170``), is masked. An international number keeps the shape the rest of the
code uses (``+1415***0170``); any other keeps its separators and only its last 2-4 digits
(``(***) ***-0170``). Shorter runs (counts, ports, years) are left alone, as are runs glued to
letters or an underscore (``ct_…`` ids, hex digests, call SIDs), ISO dates and times
(``2026-11-26T01:38:43``) and IPv4 addresses. Anything else that merely looks like a number of
7 or more digits (a Unix timestamp, a byte count) is masked too: a false alarm costs a digit or
two of a log line, a miss costs someone's number.

Credentials: the value of every parameter or field whose name says it holds one (``token``,
``key``, ``secret``, ``signature``, ``password``, ``auth…``, in any case: ``?token=…``,
``"api_key": "…"``, ``Authorization: Bearer …``), URL user info (``https://user:pw@``), API keys
by their prefix wherever they appear, and every configured secret by its value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from campaigns.phones import mask

# The shortest national numbers people dial are 7 digits; shorter runs are counts and codes.
MIN_PHONE_DIGITS = 7
# E.164 numbers have at most 15 digits; a longer run is not one number, so it keeps less.
MAX_PHONE_DIGITS = 15
# Shorter values could be ordinary words; real secrets are longer than this.
MIN_SECRET_LENGTH = 8
REDACTED = "[redacted]"

# Between two digits of one number: a space, - . / ( ), or their percent-encoded forms, or
# '+' (a space in a form-encoded query); at most two in a row, as in ") " or "%29%20".
_SEP = r"(?:[ ./()+-]|%2[0Bb89DdEeFf])"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_PHONE_OR_SKIPPED = re.compile(
    # Only where a number (or something left alone) can start: most positions fail here at once.
    r"(?=[\d(+%])(?:"
    # Left alone (matched first, so a number search never starts inside them):
    r"(?P<skip>"
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?"  # ISO date [and time]
    rf"|(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.])"  # IPv4 address
    r")"
    # A number: not inside a word or a percent escape (but right after one is fine), and at
    # least MIN_PHONE_DIGITS digits.
    r"|(?P<phone>"
    r"(?:(?<=%[0-9A-Fa-f]{2})|(?<![\w%]))"
    r"(?:\+|%2[Bb]|\(|%28)?"
    rf"\d(?:{_SEP}{{0,2}}\d){{{MIN_PHONE_DIGITS - 1},}}+"
    r")(?!\w)"
    r")"
)

_CREDENTIAL = re.compile(
    r"(?P<name>\b[\w-]*?(?:token|key|secret|signature|password|passwd|credentials?)"
    r"|\b[\w-]*?auth[\w-]*)"
    r"(?P<sep>[\"']?\s*(?:=|%3[Dd]|:)\s*[\"']?)"
    r"(?P<value>(?:(?:bearer|basic|token)\s+)?[^\s&\"';<>()\[\]{}]+)",
    re.IGNORECASE,
)
# Every credential pattern below contains one of these (lower case).
_CREDENTIAL_HINTS = (
    "token",
    "key",
    "secret",
    "signature",
    "passw",
    "credential",
    "auth",
    "://",
    "cb_",
    "sk_",
    "sec_",
)
_UNIT = re.compile(r"%[0-9A-Fa-f]{2}|.", re.DOTALL)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
# Keys and secrets we issue, recognisable by prefix (API keys, webhook secrets, ElevenLabs-style).
_ISSUED = re.compile(r"\b(?P<prefix>cb|whsec|wsec|sk)_[A-Za-z0-9_-]{16,}")


def mask_number(text: str) -> str:
    """Mask one matched number, keeping a recognisable shape but never every digit."""
    digits = re.sub(r"\D", "", re.sub(r"%[0-9A-Fa-f]{2}", _decoded_digit_free, text))
    if text.startswith(("+", "%2B", "%2b")) and len(digits) <= MAX_PHONE_DIGITS:
        return mask("+" + digits)
    keep = 4 if len(digits) >= 10 else 3 if len(digits) >= 8 else 2
    if len(digits) > MAX_PHONE_DIGITS:
        return "***" + digits[-2:]
    hidden = len(digits) - keep
    out = []
    for char in _units(text):
        if char.isdigit() and hidden > 0:
            out.append("*")
            hidden -= 1
        else:
            out.append(char)
    return "".join(out)


def _decoded_digit_free(match: re.Match[str]) -> str:
    # %2B, %28 … are separators: no digit of theirs belongs to the number.
    return " "


def _units(text: str) -> list[str]:
    """Characters, with each percent escape kept whole (its hex digits are not the number's)."""
    return _UNIT.findall(text)


def mask_numbers(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        number = match.group("phone")
        if number is None:
            return match.group(0)
        digits = sum(c.isdigit() for c in re.sub(r"%[0-9A-Fa-f]{2}", _decoded_digit_free, number))
        return mask_number(number) if digits >= MIN_PHONE_DIGITS else number

    return _PHONE_OR_SKIPPED.sub(replace, text)


def redact_credentials(text: str) -> str:
    lowered = text.lower()
    if not any(hint in lowered for hint in _CREDENTIAL_HINTS):
        return text  # the usual case, decided without running the expressions below
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _CREDENTIAL.sub(lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", text)
    return _ISSUED.sub(lambda m: f"{m.group('prefix')}_{REDACTED}", text)


class Redactor:
    """Numbers masked, credentials and the configured secrets (by value) removed."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted(
            {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def secrets(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __call__(self, text: str) -> str:
        return mask_numbers(redact_credentials(self.secrets(text)))
