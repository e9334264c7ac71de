"""The ElevenLabs-Signature of a post-call webhook: an HMAC of its timestamp and body, fresh
within a window."""

from __future__ import annotations

import hashlib
import hmac
import time

MAX_AGE_SECONDS = 30 * 60
MAX_AHEAD_SECONDS = 5 * 60


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `ElevenLabs-Signature` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v0={mac.hexdigest()}"


def signature_valid(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    timestamp = ""
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v0":
            candidates.append(value)
    # ASCII digits only ("²".isdigit() is true, int() refuses it) and no longer than a Unix
    # time can be: thousands of digits are beyond what int() converts.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12 or not candidates:
        return False
    expected = sign(secret, body, int(timestamp)).partition(",v0=")[2].encode()
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected)
    now = time.time() if now is None else now
    fresh = now - MAX_AGE_SECONDS <= int(timestamp) <= now + MAX_AHEAD_SECONDS
    return matched and fresh
