"""The Twilio Dialer: the official SDK places, lists, fetches and hangs up calls."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from bridge.telephony.port import Connection
from campaigns.clock import as_utc
from campaigns.dialing import DialAmbiguous, DialRefused, DialRequest, ProviderCall
from campaigns.failures import ErrorClass
from campaigns.models import Answerer, AttemptStatus, MachineDetection

log = logging.getLogger(__name__)

STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]

# Twilio's CallStatus values and the domain's attempt status each one is. The domain's stored
# status names happen to be spelled like Twilio's; they are the domain's own all the same, and this
# table is where a Twilio status becomes one of them.
CALL_STATUSES = {
    "queued": AttemptStatus.QUEUED,
    "initiated": AttemptStatus.INITIATED,
    "ringing": AttemptStatus.RINGING,
    "in-progress": AttemptStatus.IN_PROGRESS,
    "completed": AttemptStatus.COMPLETED,
    "busy": AttemptStatus.BUSY,
    "no-answer": AttemptStatus.NO_ANSWER,
    "failed": AttemptStatus.FAILED,
    "canceled": AttemptStatus.CANCELED,
}

# The domain's machine-detection settings as Twilio's MachineDetection parameter (OFF: not sent).
MACHINE_DETECTION = {
    MachineDetection.DETECT: "Enable",
    MachineDetection.UNTIL_GREETING_ENDS: "DetectMessageEnd",
}

# Twilio's AnsweredBy values and the domain's class of each (the value itself is kept and shown).
ANSWERERS = {
    "human": Answerer.HUMAN,
    "machine_start": Answerer.MACHINE,
    # With DetectMessageEnd: the greeting has ended (at a beep, a silence, or otherwise).
    "machine_end_beep": Answerer.MACHINE_GREETING_OVER,
    "machine_end_silence": Answerer.MACHINE_GREETING_OVER,
    "machine_end_other": Answerer.MACHINE_GREETING_OVER,
    "fax": Answerer.FAX,
    "unknown": Answerer.UNKNOWN,
}


def answerer(answered_by: str | None) -> str | None:
    """The domain's class of a Twilio AnsweredBy value (None when Twilio gave none)."""
    if not answered_by:
        return None
    return ANSWERERS.get(answered_by, Answerer.UNKNOWN)


# Twilio error codes and the domain's class of each; a code not here has no class.
ERROR_CLASSES = {
    "21211": ErrorClass.INVALID_NUMBER,
    "21214": ErrorClass.INVALID_NUMBER,
    "21216": ErrorClass.INVALID_NUMBER,
    "21217": ErrorClass.INVALID_NUMBER,
    "21202": ErrorClass.INVALID_NUMBER,
    "21215": ErrorClass.DESTINATION_REFUSED,
    "13227": ErrorClass.DESTINATION_NOT_ENABLED,
    "20003": ErrorClass.CREDENTIALS_REFUSED,
    "21210": ErrorClass.CALLER_ID_NOT_OWNED,
    "21212": ErrorClass.CALLER_ID_INVALID,
    "21219": ErrorClass.TRIAL_ACCOUNT,
}

_GEO_FIX = (
    "Enable the destination countries in the Twilio console (Voice > Settings > Geo "
    "permissions), then resume the campaign."
)
# How to fix, on a Twilio account, each failure the circuit breaker pauses a campaign for.
REMEDIES = {
    ErrorClass.CREDENTIALS_REFUSED: (
        "Check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (a rotated or revoked auth token is the "
        "usual cause), restart the service with the right ones, then resume the campaign."
    ),
    ErrorClass.CALLER_ID_NOT_OWNED: (
        "Buy {from_number} or add it as a Verified Caller ID in the Twilio console, or set the "
        "campaign's from_number to a number the account owns, then resume the campaign."
    ),
    ErrorClass.CALLER_ID_INVALID: (
        "Set the campaign's from_number to a number the account owns, in E.164 form, then "
        "resume the campaign."
    ),
    ErrorClass.DESTINATION_REFUSED: _GEO_FIX,
    ErrorClass.DESTINATION_NOT_ENABLED: _GEO_FIX,
    ErrorClass.TRIAL_ACCOUNT: (
        "Upgrade the Twilio account (or verify the numbers to call), then resume the campaign."
    ),
}


def error_class(code: str | None) -> str | None:
    """The domain's class of a Twilio error code (None: a code the domain need not tell apart)."""
    return ERROR_CLASSES.get(code) if code else None


def attempt_status(call_status: str) -> str:
    """The domain's status for a Twilio CallStatus. A status Twilio may add later is passed on
    as it is: the domain ranks a status it does not know below every live one, so it moves
    nothing."""
    return CALL_STATUSES.get(call_status, call_status)


# Calls placed by the Twilio dialer; the TwiML handler joins the agent to the answered call over
# our own media relay (stream) or with ElevenLabs' register-call TwiML (register).
CONNECTIONS = (Connection("stream"), Connection("register"))


def callback_url(base_url: str, path: str, attempt_id: str) -> str:
    return f"{base_url}{path}?{urlencode({'attempt_id': attempt_id})}"


class TwilioDialer:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        public_url: str,
        api_base_url: str | None,
        default_from: str | None,
        timeout_seconds: float,
    ) -> None:
        # Built inside the running loop (the SDK's aiohttp session needs one). No max_retries:
        # the SDK would retry a POST that may already have created a call.
        self._http = AsyncTwilioHttpClient()
        # An explicit environment keeps TWILIO_REGION / TWILIO_EDGE from rewriting the host.
        self._client = Client(
            account_sid, auth_token, http_client=self._http, environment={"CALLBRIDGE": "1"}
        )
        if api_base_url:
            self._client.api.base_url = api_base_url.rstrip("/")
        self._public_url = public_url
        self._default_from = default_from
        self._timeout = timeout_seconds

    async def close(self) -> None:
        await self._http.close()

    async def place_call(self, request: DialRequest) -> str:
        from_number = request.from_number or self._default_from
        if not from_number:
            raise DialRefused("the campaign has no from_number", code="from_number_missing")
        params: dict[str, Any] = {
            "to": request.to,
            "from_": from_number,
            "url": callback_url(self._public_url, "/webhooks/twilio/twiml", request.attempt_id),
            "status_callback": callback_url(
                self._public_url, "/webhooks/twilio/status", request.attempt_id
            ),
            "status_callback_event": STATUS_EVENTS,
            "status_callback_method": "POST",
            "timeout": request.ring_timeout_seconds,
            "time_limit": request.time_limit_seconds,
        }
        if request.record:
            params["record"] = True
        machine_detection = MACHINE_DETECTION.get(request.machine_detection or "")
        if machine_detection:
            params |= {
                "machine_detection": machine_detection,
                "async_amd": "true",
                "async_amd_status_callback": callback_url(
                    self._public_url, "/webhooks/twilio/amd", request.attempt_id
                ),
                "async_amd_status_callback_method": "POST",
            }
        try:
            # The SDK ignores its own timeout setting: bound the request here.
            call = await asyncio.wait_for(self._client.calls.create_async(**params), self._timeout)
        except TwilioRestException as exc:
            raise _classify(exc) from exc
        except aiohttp.ClientConnectorError as exc:
            # No connection was made, so nothing was sent: safe to try again.
            raise DialRefused(f"cannot reach the provider: {exc}", retryable=True) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DialAmbiguous(f"{type(exc).__name__}: {exc}") from exc
        return str(call.sid)

    def can_list_calls(self, agent_connection: str) -> bool:
        # Twilio lists an account's calls by number: every call placed on it can be found.
        return True

    async def find_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        calls = await asyncio.wait_for(
            self._client.calls.list_async(to=to, limit=100), self._timeout
        )
        found = [_provider_call(c) for c in calls]
        return [c for c in found if c.created_at is None or c.created_at >= since]

    async def fetch_call(self, call_id: str) -> ProviderCall | None:
        try:
            call = await asyncio.wait_for(self._client.calls(call_id).fetch_async(), self._timeout)
        except TwilioRestException as exc:
            if exc.status == 404:
                return None
            raise
        return _provider_call(call)

    async def hang_up(self, call_id: str) -> None:
        await asyncio.wait_for(
            self._client.calls(call_id).update_async(status="completed"), self._timeout
        )

    async def leave_message(self, call_id: str, message: str) -> None:
        """Replace the live call's TwiML: say the message after the beep, then hang up."""
        response = VoiceResponse()
        response.say(message)
        response.hangup()
        await asyncio.wait_for(
            self._client.calls(call_id).update_async(twiml=str(response)), self._timeout
        )


def _classify(exc: TwilioRestException) -> Exception:
    code = str(exc.code) if exc.code is not None else None
    if exc.status == 429 or code == "20429":
        return DialRefused(exc.msg or "too many requests", code=code or "429", retryable=True)
    if 400 <= exc.status < 500:
        return DialRefused(
            exc.msg or f"HTTP {exc.status}",
            code=code or str(exc.status),
            error_class=error_class(code),
        )
    # A 5xx may come after the call was created: only reconciliation can tell.
    return DialAmbiguous(f"HTTP {exc.status} {code or ''} {exc.msg or ''}".strip())


def _provider_call(call: Any) -> ProviderCall:
    status = getattr(call.status, "value", call.status)
    duration = call.duration
    return ProviderCall(
        call_id=str(call.sid),
        to=str(call.to),
        status=attempt_status(str(status)),
        created_at=as_utc(call.date_created) if isinstance(call.date_created, datetime) else None,
        answered_by=call.answered_by,
        answerer=answerer(call.answered_by),
        duration_seconds=int(duration) if duration not in (None, "") else None,
    )
