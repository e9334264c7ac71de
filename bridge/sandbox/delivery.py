"""Signed HTTP requests from the sandbox carrier to the application, the way Twilio sends them,
and the journal in which the sandbox keeps what it sent."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator
from yarl import URL

from bridge.sandbox.store import Callback, CallbackState

logger = logging.getLogger(__name__)

# Twilio waits this long for a webhook to answer before treating it as failed.
REQUEST_TIMEOUT_SECONDS = 15.0
USER_AGENT = "TwilioProxy/1.1"


@dataclass(frozen=True)
class Reply:
    status: int | None  # None: no HTTP answer at all (connection error, timeout)
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500


class Journal:
    """Every request the sandbox sent, oldest first, as it went over the wire.

    Kept so that what the sandbox plays can be checked against the vendors' published specs
    (a test reads it through the inspection routes). Bounded: a long demo keeps the newest.
    Each entry has a ``seq`` that only grows, so a reader can ask for what came after it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = itertools.count(1)

    def record(self, **entry: Any) -> None:
        self._entries.append({"seq": next(self._seq), **entry})

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, after: int = 0) -> list[dict[str, Any]]:
        return [entry for entry in self._entries if entry["seq"] > after]


# Twilio requests are a few hundred bytes each: enough for a few hundred calls' worth
# (CALLBRIDGE_SANDBOX_JOURNAL_ENTRIES).
JOURNAL_LIMIT = 5000


def loggable_url(url: str) -> str:
    """The URL without credentials or query string, which may carry tokens."""
    try:
        return str(URL(url).with_user(None).with_query(None))
    except ValueError:
        return "<unparsable url>"


class Sender:
    """Signs and sends webhook requests; retries a failed status callback once, like Twilio."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth_token: str,
        *,
        retry_delay: float,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        journal_limit: int = JOURNAL_LIMIT,
    ) -> None:
        self._session = session
        self._validator = RequestValidator(auth_token)
        self._retry_delay = retry_delay
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.journal = Journal(journal_limit)

    def sign_with(self, auth_token: str) -> None:
        """Sign from now on with another auth token (the installation's, once it is known)."""
        self._validator = RequestValidator(auth_token)

    async def request(
        self,
        url: str,
        method: str,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
        *,
        kind: str,
        keep_reply: bool = False,
    ) -> Reply:
        """One signed request; never raises for network trouble. ``kind`` (twiml, status, amd)
        is what the journal files it under."""
        if method == "GET":
            # A GET carries the parameters in the URL, so the signature covers them there.
            target = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}" if params else url
            signature = self._validator.compute_signature(target, {})
            body = None
        else:
            target = url
            signature = self._validator.compute_signature(url, params)
            body = urlencode(params)
        all_headers = {
            "X-Twilio-Signature": signature,
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        if body is not None:
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        reply = Reply(None)
        try:
            # encoded=True: send the URL exactly as signed, with no re-quoting of its query.
            async with self._session.request(
                method,
                URL(target, encoded=True),
                data=body,
                headers=all_headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                reply = Reply(response.status, await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.info("webhook %s %s failed: %r", method, loggable_url(url), exc)
        self.journal.record(
            source="twilio",
            kind=kind,
            method=method,
            url=target,
            params=params,
            signature=signature,
            response_status=reply.status,
            # What a caller was answered with (inbound calls): what they heard is in it.
            **({"response_body": reply.text} if keep_reply else {}),
        )
        return reply

    async def deliver(self, callback: Callback) -> tuple[str, int, int | None]:
        """Send one queued callback: (final state, attempts made, last HTTP status)."""
        headers = {"I-Twilio-Idempotency-Token": callback.idempotency_token}
        attempts = 0
        reply = Reply(None)
        for attempt in (1, 2):
            attempts = attempt
            kind = "amd" if callback.event == "amd" else "status"
            reply = await self.request(
                callback.url, callback.method, callback.params, headers, kind=kind
            )
            if not reply.retryable:
                break
            if attempt == 1:
                await asyncio.sleep(self._retry_delay)
        if not reply.ok:
            logger.warning(
                "callback %s of call %s to %s given up after %d attempt(s), last status %s",
                callback.event,
                callback.call_sid,
                loggable_url(callback.url),
                attempts,
                reply.status,
            )
        state = CallbackState.DELIVERED if reply.ok else CallbackState.FAILED
        return state, attempts, reply.status
