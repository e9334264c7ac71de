"""Failed authentication, counted per client address: an address that presented
``max_failures`` wrong keys within ``window_seconds`` is refused (429) until the oldest of those
failures is that old.

While refused, an address gets 429 whatever key it presents, the right one included: if a right
key still went through, the answer to each guess (429 or 200) would tell the guesser when it had
found one, and the throttle would slow nothing down.

The table lives in the process (each node counts the requests it serves) and holds at most
``max_addresses`` addresses, each with at most ``max_failures`` instants: an attacker with many
addresses pushes out the addresses that failed longest ago, it cannot grow the table.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000


class FailedAuthThrottle:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window = window_seconds
        self._max_addresses = max_addresses
        self._clock = clock
        # address -> instants of its latest failures; least recently failed first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        instants = self._failures.get(address)
        if instants is None:
            instants = self._failures[address] = deque(maxlen=self._max_failures)
        else:
            self._failures.move_to_end(address)
        instants.append(self._clock())
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)

    def retry_after(self, address: str) -> int:
        """Whole seconds until ``address`` may present a key again; 0: it may now."""
        instants = self._failures.get(address)
        if instants is None or len(instants) < self._max_failures:
            return 0
        remaining = self._window - (self._clock() - instants[0])
        if remaining <= 0:
            return 0
        return max(1, math.ceil(remaining))
