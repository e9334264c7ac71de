"""Per-attempt tokens for Media Stream <Parameter>s: the WebSocket proves which attempt it is.

The token is an HMAC over the attempt id and an expiry, keyed by a secret derived from the Twilio
auth token, so every node of a deployment checks it the same way with nothing stored.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TOKEN_TTL_SECONDS = 600


def derive_secret(auth_token: str) -> bytes:
    return hmac.new(auth_token.encode(), b"callbridge media stream token v1", "sha256").digest()


def _mac(secret: bytes, attempt_id: str, expires: int) -> str:
    return hmac.new(secret, f"{attempt_id}.{expires}".encode(), hashlib.sha256).hexdigest()


def issue(secret: bytes, attempt_id: str, *, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + TOKEN_TTL_SECONDS)
    return f"{expires}.{_mac(secret, attempt_id, expires)}"


def verify(secret: bytes, attempt_id: str, token: str, *, now: float | None = None) -> bool:
    expires_text, _, mac = token.partition(".")
    if not attempt_id or not expires_text.isdigit() or not mac:
        return False
    expires = int(expires_text)
    fresh = expires >= (time.time() if now is None else now)
    # Compared whatever the expiry says, so timing tells nothing about the MAC.
    matches = hmac.compare_digest(mac.encode(), _mac(secret, attempt_id, expires).encode())
    return matches and fresh
