"""Twilio's wire formats for the sandbox carrier: request parsing, resources, errors, callbacks.

Kept apart from the simulation so that what goes over the wire can be read (and checked against
Twilio's spec) in one place. Error codes are Twilio's: 20003 authenticate, 20404 not found,
21201 no To, 21211 invalid To, 21212 invalid From, 21213 no From, 21205 invalid Url, 21208 invalid
Timeout, 21220 call not in progress, and 21200 (Calls resource) for other bad parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import phonenumbers
from aiohttp import web
from multidict import MultiMapping

from bridge.sandbox.geography import location_params
from bridge.sandbox.store import CallFilter, CallSettings, SandboxCall
from campaigns.clock import parse_instant, within_range

API_VERSION = "2010-04-01"
DIRECTION = "outbound-api"
INBOUND = "inbound"
# Where the carrier marks, in a call's stored params, a call it received rather than placed: a
# name no create form uses.
DIRECTION_PARAM = "SandboxDirection"
CALLBACK_SOURCE = "call-progress-events"
PROGRESS_EVENTS = ("initiated", "ringing", "answered", "completed")
MACHINE_DETECTION_MODES = {"enable": "Enable", "detectmessageend": "DetectMessageEnd"}
# A caller id the sandbox treats as not verified on the account: creates from it fail with 21210.
UNVERIFIED_FROM = "+15005550009"
# A number of the account whose voice URL was never changed from Twilio's demo: calls to it
# never reach callbridge (what `callbridge check` reports).
UNCONFIGURED_NUMBER = "+15005550007"
DEMO_VOICE_URL = "https://demo.twilio.com/welcome/voice/"
DEFAULT_TIMEOUT = 60
MAX_TIMEOUT = 600
DEFAULT_TIME_LIMIT = 4 * 60 * 60
MAX_TIME_LIMIT = 24 * 60 * 60
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
SIP_RESPONSE_CODES = {
    "completed": 200,
    "busy": 486,
    "no-answer": 487,
    "canceled": 487,
    "failed": 500,
}
CALL_STATUSES = frozenset(
    {"queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"}
)
_SUBRESOURCES = {
    "notifications": "Notifications",
    "recordings": "Recordings",
    "payments": "Payments",
    "events": "Events",
    "siprec": "Siprec",
    "streams": "Streams",
    "transcriptions": "Transcriptions",
    "user_defined_message_subscriptions": "UserDefinedMessageSubscriptions",
    "user_defined_messages": "UserDefinedMessages",
}
# Query keys of the list endpoint that are not filters.
_PAGING_KEYS = frozenset({"Page", "PageSize", "PageToken"})


class TwilioError(Exception):
    """An error answered in Twilio's JSON shape, which the SDK turns into TwilioRestException."""

    def __init__(self, status: int, code: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def response(self) -> web.Response:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if self.status == 401 else None
        return web.json_response(body, status=self.status, headers=headers)


def authentication_error() -> TwilioError:
    return TwilioError(401, 20003, "Authenticate", "Your AccountSid or AuthToken was incorrect.")


def not_found(path: str) -> TwilioError:
    return TwilioError(404, 20404, f"The requested resource {path} was not found")


def rfc2822(value: datetime | None) -> str | None:
    return format_datetime(value.astimezone(UTC)) if value is not None else None


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value is not None else None


def display_number(number: str) -> str:
    """Twilio's *_formatted: national format in the NANP, E.164 elsewhere."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    if parsed.country_code == 1:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _phone_number_sid(number: str) -> str:
    # Stable per caller ID, shaped like Twilio's PN sids.
    return "PN" + hashlib.sha256(number.encode()).hexdigest()[:32]


def direction(call: SandboxCall) -> str:
    """``inbound`` for a call to one of the account's numbers, else ``outbound-api``."""
    return INBOUND if call.params.get(DIRECTION_PARAM) == INBOUND else DIRECTION


def calls_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Calls"


def call_resource(call: SandboxCall) -> dict[str, Any]:
    """The JSON Call resource, field for field as Twilio's API v2010 returns it."""
    base = f"{calls_path(call.account_sid)}/{call.sid}"
    return {
        "account_sid": call.account_sid,
        "answered_by": call.answered_by,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(call.created_at),
        "date_updated": rfc2822(call.updated_at),
        "direction": direction(call),
        "duration": None if call.duration is None else str(call.duration),
        "end_time": rfc2822(call.end_time),
        "forwarded_from": None,
        "from": call.from_number,
        "from_formatted": display_number(call.from_number),
        "group_sid": None,
        "parent_call_sid": None,
        # The account's number of the call: the caller id it placed, or the number it received.
        "phone_number_sid": _phone_number_sid(
            call.to_number if direction(call) == INBOUND else call.from_number
        ),
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": rfc2822(call.start_time),
        "status": call.status,
        "subresource_uris": {key: f"{base}/{name}.json" for key, name in _SUBRESOURCES.items()},
        "to": call.to_number,
        "to_formatted": display_number(call.to_number),
        "trunk_sid": None,
        "uri": f"{base}.json",
    }


def inspection_record(call: SandboxCall, planned: str) -> dict[str, Any]:
    """One entry of the sandbox's own /calls log (not a Twilio format)."""
    return {
        "sid": call.sid,
        "direction": direction(call),
        "to": call.to_number,
        "from": call.from_number,
        "url": call.url,
        "status_callback": call.status_callback,
        "status_callback_events": call.status_callback_events,
        "machine_detection": call.machine_detection,
        # How long it may ring, and whether the call is recorded (Record), as the create asked.
        "timeout": call.timeout,
        "record": (call.param("Record") or "").lower() == "true",
        "status": call.status,
        "answered_by": call.answered_by,
        "attempt_number": call.attempt_number,
        "planned_outcome": planned,
        "duration": call.duration,
        "created_at": iso(call.created_at),
        "start_time": iso(call.start_time),
        "answered_at": iso(call.answered_at),
        "end_time": iso(call.end_time),
    }


# ---------------------------------------------------------------------------- create requests


def raw_params(form: MultiMapping[Any]) -> dict[str, Any]:
    """The form as received: one string per key, a list for keys that were repeated."""
    params: dict[str, Any] = {}
    for key in dict.fromkeys(form.keys()):
        values = [str(value) for value in form.getall(key)]
        params[key] = values[0] if len(values) == 1 else values
    return params


def _text(form: MultiMapping[Any], key: str) -> str | None:
    value = form.get(key)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def e164(number: str) -> str | None:
    """The number in E.164 when it is a valid phone number, else None."""
    return _e164(number)


def _e164(number: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _check_from(from_: str) -> None:
    # Client identifiers and SIP addresses are legal callers; only numbers are checked.
    if not from_.startswith("+"):
        return
    try:
        possible = phonenumbers.is_possible_number(phonenumbers.parse(from_, None))
    except phonenumbers.NumberParseException:
        possible = False
    if not possible:
        raise TwilioError(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
    if from_ == UNVERIFIED_FROM:
        raise TwilioError(
            400,
            21210,
            f"The source phone number provided, {from_}, is not yet verified for your account."
            " You may only make calls from phone numbers that you've verified or purchased"
            " from Twilio.",
        )


def _method(form: MultiMapping[Any], key: str) -> str:
    method = (_text(form, key) or "POST").upper()
    if method not in ("GET", "POST"):
        raise TwilioError(400, 21200, f"{key} must be GET or POST")
    return method


def _callback_url(form: MultiMapping[Any], key: str) -> str | None:
    url = _text(form, key)
    if url is not None and not _is_http_url(url):
        raise TwilioError(400, 21200, f"{key} is not a valid URL: {url}")
    return url


def _events(form: MultiMapping[Any]) -> list[str]:
    # The SDK repeats the key per event; older clients send one space-separated value.
    events: list[str] = []
    for value in form.getall("StatusCallbackEvent", []):
        events.extend(str(value).replace(",", " ").lower().split())
    unknown = sorted(set(events) - set(PROGRESS_EVENTS))
    if unknown:
        allowed = ", ".join(PROGRESS_EVENTS)
        raise TwilioError(400, 21200, f"StatusCallbackEvent {unknown[0]!r} is not one of {allowed}")
    return list(dict.fromkeys(events))


def _bounded_int(
    form: MultiMapping[Any], key: str, default: int, maximum: int, error_code: int
) -> int:
    raw = _text(form, key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise TwilioError(400, error_code, f"Invalid {key}: {raw}")
    # Twilio silently caps values above the maximum.
    return min(value, maximum)


def _machine_detection(form: MultiMapping[Any]) -> str | None:
    raw = _text(form, "MachineDetection")
    if raw is None:
        return None
    mode = MACHINE_DETECTION_MODES.get(raw.lower())
    if mode is None:
        raise TwilioError(400, 21200, "MachineDetection must be Enable or DetectMessageEnd")
    # SendDigits turns answering machine detection off.
    return None if _text(form, "SendDigits") else mode


def parse_call_request(form: MultiMapping[Any]) -> CallSettings:
    to = _text(form, "To")
    if to is None:
        raise TwilioError(400, 21201, "No 'To' number is specified")
    from_ = _text(form, "From")
    if from_ is None:
        raise TwilioError(400, 21213, "No 'From' number is specified")
    to_e164 = _e164(to)
    if to_e164 is None:
        raise TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    _check_from(from_)
    url = _text(form, "Url")
    if url is None and not (_text(form, "Twiml") or _text(form, "ApplicationSid")):
        raise TwilioError(400, 21205, "A Url, Twiml or ApplicationSid parameter is required.")
    if url is not None and not _is_http_url(url):
        raise TwilioError(400, 21205, f"Url is not a valid URL: {url}")
    for key in ("Method", "StatusCallbackMethod", "AsyncAmdStatusCallbackMethod"):
        _method(form, key)
    return CallSettings(
        to_number=to_e164,
        from_number=from_,
        url=url,
        status_callback=_callback_url(form, "StatusCallback"),
        status_callback_events=_events(form),
        machine_detection=_machine_detection(form),
        async_amd=(_text(form, "AsyncAmd") or "false").lower() == "true",
        async_amd_status_callback=_callback_url(form, "AsyncAmdStatusCallback"),
        timeout=_bounded_int(form, "Timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT, 21208),
        time_limit=_bounded_int(form, "TimeLimit", DEFAULT_TIME_LIMIT, MAX_TIME_LIMIT, 21200),
        params=raw_params(form),
    )


def request_method(call: SandboxCall, key: str) -> str:
    return (call.param(key) or "POST").upper()


# ---------------------------------------------------------------------------- callbacks


def call_params(call: SandboxCall, call_status: str) -> dict[str, str]:
    """What Twilio sends about a call in every request for it (TwiML and status callbacks).

    ``Called``/``Caller`` repeat ``To``/``From`` (Twilio keeps both sets), and each party comes
    with the place Twilio found for its number. No ``ForwardedFrom``, ``CallerName`` or
    ``ParentCallSid``: Twilio sends those only for forwarded, caller-name and child calls, and a
    call placed through the API is none of them.
    """
    params = {
        "CallSid": call.sid,
        "AccountSid": call.account_sid,
        "From": call.from_number,
        "To": call.to_number,
        "Caller": call.from_number,
        "Called": call.to_number,
        "CallStatus": call_status,
        "Direction": direction(call),
        "ApiVersion": API_VERSION,
    }
    for prefix, number in (
        ("From", call.from_number),
        ("Caller", call.from_number),
        ("To", call.to_number),
        ("Called", call.to_number),
    ):
        params.update(location_params(prefix, number))
    return params


def progress_params(
    call: SandboxCall, call_status: str, sequence_number: int, at: datetime
) -> dict[str, str]:
    """A call-progress-events status callback, as Twilio posts it to StatusCallback."""
    return {
        **call_params(call, call_status),
        "Timestamp": rfc2822(at) or "",
        "CallbackSource": CALLBACK_SOURCE,
        "SequenceNumber": str(sequence_number),
    }


def terminal_params(
    call_status: str, duration: int, error_code: str | None = None
) -> dict[str, str]:
    params = {
        "CallDuration": str(duration),
        "SipResponseCode": str(SIP_RESPONSE_CODES[call_status]),
    }
    if error_code:
        params["ErrorCode"] = error_code
    return params


def twiml_params(
    call: SandboxCall, answered_by: str | None, detection_ms: int | None = None
) -> dict[str, str]:
    """The request for the call's TwiML; synchronous AMD adds its verdict and how long it took."""
    params = call_params(call, "in-progress")
    if answered_by:
        params["AnsweredBy"] = answered_by
        if detection_ms is not None:
            params["MachineDetectionDuration"] = str(detection_ms)
    return params


def amd_params(call: SandboxCall, answered_by: str, duration_ms: int) -> dict[str, str]:
    return {
        "CallSid": call.sid,
        "AccountSid": call.account_sid,
        "AnsweredBy": answered_by,
        "MachineDetectionDuration": str(duration_ms),
    }


# ---------------------------------------------------------------------------- list requests


@dataclass(frozen=True)
class ListRequest:
    filters: CallFilter
    page: int
    page_size: int
    page_token: str | None
    # The filters as given, echoed into the page URIs.
    filter_query: tuple[tuple[str, str], ...]


def _parse_instant(key: str, raw: str) -> tuple[datetime, bool]:
    """A filter value as a UTC instant, and whether it named a whole day."""
    try:
        if len(raw) == 10:
            day = datetime.combine(date.fromisoformat(raw), time(), tzinfo=UTC)
            return within_range(day, raw), True
        return parse_instant(raw, UTC), False
    except ValueError as exc:  # BadInstant among them
        raise TwilioError(400, 21200, f"Invalid {key}: {raw}") from exc


def _bounds(query: Mapping[str, str], field: str) -> tuple[datetime | None, datetime | None]:
    """[lower, upper) for StartTime/EndTime and their > / < (or >= / <=) variants.

    A date alone means the whole day (``StartTime<=2009-07-06`` includes the 6th); a full
    timestamp is taken as the instant it names.
    """
    lower: datetime | None = None
    upper: datetime | None = None
    one_day = timedelta(days=1)
    for key, raw in query.items():
        if not key.startswith(field) or not raw:
            continue
        operator = key[len(field) :].rstrip("=")
        if operator not in ("", ">", "<"):
            continue
        instant, whole_day = _parse_instant(key, raw)
        day = instant.replace(hour=0, minute=0, second=0, microsecond=0)
        if operator == "":
            lower, upper = day, day + one_day
        elif operator == ">":
            lower = day if whole_day else instant
        else:
            upper = day + one_day if whole_day else instant + timedelta(microseconds=1)
    return lower, upper


def _positive_int(query: Mapping[str, str], key: str, default: int, minimum: int) -> int:
    raw = query.get(key)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise TwilioError(400, 21200, f"Invalid {key}: {raw}") from exc
    if value < minimum:
        raise TwilioError(400, 21200, f"Invalid {key}: {raw}")
    return value


def parse_list_request(query: Mapping[str, str]) -> ListRequest:
    status = query.get("Status") or None
    if status is not None and status not in CALL_STATUSES:
        raise TwilioError(400, 21200, f"Invalid Status: {status}")
    start_from, start_before = _bounds(query, "StartTime")
    end_from, end_before = _bounds(query, "EndTime")
    to = query.get("To") or None
    filters = CallFilter(
        to=(_e164(to) or to) if to else None,
        from_=query.get("From") or None,
        status=status,
        parent_call_sid=query.get("ParentCallSid") or None,
        start_from=start_from,
        start_before=start_before,
        end_from=end_from,
        end_before=end_before,
    )
    page_size = min(_positive_int(query, "PageSize", DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE)
    return ListRequest(
        filters=filters,
        page=_positive_int(query, "Page", 0, 0),
        page_size=page_size,
        page_token=query.get("PageToken") or None,
        filter_query=tuple((k, v) for k, v in query.items() if k not in _PAGING_KEYS),
    )


def _page_uri(account_sid: str, request: ListRequest, page: int, token: str | None = None) -> str:
    query: list[tuple[str, str]] = [*request.filter_query, ("PageSize", str(request.page_size))]
    query.append(("Page", str(page)))
    if token:
        query.append(("PageToken", token))
    return f"{calls_path(account_sid)}.json?{urlencode(query)}"


def list_page(
    account_sid: str, request: ListRequest, calls: Iterable[SandboxCall], has_more: bool
) -> dict[str, Any]:
    """A Twilio list page; the SDK follows next_page_uri until it is null."""
    records = [call_resource(call) for call in calls]
    start = request.page * request.page_size
    next_token = f"PA{records[-1]['sid']}" if records and has_more else None
    return {
        "calls": records,
        "end": start + max(len(records) - 1, 0),
        "first_page_uri": _page_uri(account_sid, request, 0),
        "next_page_uri": (
            _page_uri(account_sid, request, request.page + 1, next_token) if next_token else None
        ),
        "page": request.page,
        "page_size": request.page_size,
        "previous_page_uri": (
            _page_uri(account_sid, request, request.page - 1) if request.page > 0 else None
        ),
        "start": start,
        "uri": _page_uri(account_sid, request, request.page, request.page_token),
    }
