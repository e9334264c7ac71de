"""Stream tickets: how the browser's EventSource proves it may read the live stream.

An EventSource cannot send an Authorization header, and an API key must never ride in a URL (URLs
end up in logs and browser history). So the page, which holds the key in sessionStorage, trades it
(``POST /api/v1/dashboard/session`` with the usual bearer header) for a short-lived ticket: an
HMAC-signed expiry, set as an HttpOnly, SameSite=Strict cookie scoped to the stream's path only. The
ticket grants nothing but reading the stream; it expires after ``TICKET_SECONDS`` and the stream
ends when it does, so a revoked key stops feeding a page within that time. The page renews it
before then.

Tickets are signed with ``CALLBRIDGE_DASHBOARD_SECRET`` when set (so every node behind one address
accepts every node's tickets), otherwise with a random per-process secret: after a restart, or on
another node, the page simply asks for a new ticket.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

TICKET_SECONDS = 600
COOKIE = "callbridge_stream"
STREAM_PATH = "/dashboard/stream"
_PURPOSE = b"callbridge-dashboard-stream-v1"


class Tickets:
    def __init__(self, secret: str | None = None) -> None:
        raw = secret.encode() if secret else secrets.token_bytes(32)
        # Keyed by purpose, so the configured secret signs nothing else by accident.
        self._key = hmac.new(raw, _PURPOSE, hashlib.sha256).digest()

    def issue(self, now: float | None = None, ttl: int = TICKET_SECONDS) -> tuple[str, int]:
        expires = int((time.time() if now is None else now) + ttl)
        nonce = secrets.token_urlsafe(12)
        body = f"{expires}.{nonce}"
        return f"{body}.{self._sign(body)}", expires

    def expiry(self, ticket: str | None, now: float | None = None) -> int | None:
        """The ticket's expiry (Unix seconds) if it is genuine and still valid, else None."""
        if not ticket or len(ticket) > 200:
            return None
        body, _, signature = ticket.rpartition(".")
        expires_text, _, nonce = body.partition(".")
        if not (expires_text.isdigit() and nonce and signature):
            return None
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        expires = int(expires_text)
        return expires if expires > (time.time() if now is None else now) else None

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
