"""``Callbridge-Signature: t=<unix seconds>,v0=<hex HMAC-SHA256(secret, "<t>.<body>")>``, the
scheme ElevenLabs uses for its own webhooks, so receivers can reuse their verification code."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Callbridge-Signature"
# A receiver should refuse signatures older (or further in the future) than this.
DEFAULT_TOLERANCE_SECONDS = 30 * 60


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v0={mac}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a receiver does: parse, check the age, compare in constant time."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_seconds:
        return False
    expected = sign(secret, body, t).split("v0=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v0", ""))
