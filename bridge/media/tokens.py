"""Tokens for Media Stream <Parameter>s: the WebSocket proves which attempt and call it carries.

A token is an HMAC over the attempt id, the call's sid and an expiry, keyed by a secret derived
from the Twilio auth token, so every node of a deployment checks it the same way. The MAC makes
it good for that one call only; that it opens one stream only is kept in the database
(`bridge.media.calls.start_stream`), which every node shares.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

TOKEN_TTL_SECONDS = 600
# What a registered call's token names instead of a call sid: its TwiML is asked for before
# anyone tells us the call's sid, which the stream's `start` brings (bridge.media.calls).
REGISTERED_CALL = "registered-call"


def derive_secret(auth_token: str) -> bytes:
    # v2: tokens name the call too; a token of the earlier kind is not one of these.
    return hmac.new(auth_token.encode(), b"callbridge media stream token v2", "sha256").digest()


def _mac(secret: bytes, attempt_id: str, call_sid: str, expires: int) -> str:
    # JSON keeps the fields apart: no pair of ids can be shifted into another with the same text.
    message = json.dumps([attempt_id, call_sid, expires]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def issue(secret: bytes, attempt_id: str, call_sid: str, *, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + TOKEN_TTL_SECONDS)
    return f"{expires}.{_mac(secret, attempt_id, call_sid, expires)}"


def verify(
    secret: bytes, attempt_id: str, call_sid: str, token: str, *, now: float | None = None
) -> bool:
    """True for an unexpired token issued for this attempt and this call."""
    expires_text, _, mac = token.partition(".")
    # isdecimal() and a length bound: int() must only ever see plain ASCII digits, not "²".
    if not (attempt_id and call_sid and mac and mac.isascii() and expires_text.isascii()):
        return False
    if not expires_text.isdecimal() or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    fresh = expires >= (time.time() if now is None else now)
    # Compared whatever the expiry says, so timing tells nothing about the MAC.
    matches = hmac.compare_digest(
        mac.encode(), _mac(secret, attempt_id, call_sid, expires).encode()
    )
    return matches and fresh
