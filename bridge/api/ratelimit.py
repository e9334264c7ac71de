"""Per-key token buckets: each key may make ``limit`` requests per minute, in bursts of up to
``limit``. Buckets live in the process: with several nodes each node enforces the limit on the
requests it serves."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until the bucket is full again, and (when refused) until one request is allowed.
    reset_seconds: int
    retry_after_seconds: int

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key id -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str, per_minute: int) -> Decision:
        now = self._clock()
        capacity = float(per_minute)
        rate = per_minute / 60.0
        tokens, at = self._buckets.get(key_id, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key_id] = (tokens, now)
        return Decision(
            allowed=allowed,
            limit=per_minute,
            remaining=int(tokens),
            reset_seconds=math.ceil((capacity - tokens) / rate),
            retry_after_seconds=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)),
        )
