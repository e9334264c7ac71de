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

from bridge.telephony.twilio.markup import say_and_hang_up
from bridge.telephony.twilio.statuses import (
    MACHINE_DETECTION,
    answerer,
    attempt_status,
    error_class,
)
from campaigns.clock import as_utc
from campaigns.dialing import DialAmbiguous, DialRefused, DialRequest, ProviderCall

log = logging.getLogger(__name__)

STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


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
        response = say_and_hang_up(message)
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
