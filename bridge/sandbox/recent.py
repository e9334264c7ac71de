"""What the sandbox keeps in memory about past calls, for inspection, bounded.

The sandbox remembers things a test or a rehearsal may want to look at after a call (an agent's
conversation record, a media stream's statistics, the TwiML a call was updated with). A service
that runs for weeks must not keep one of each per call for ever: these keep the newest ones only,
up to a configured number (``CALLBRIDGE_SANDBOX_MEMORY_RECORDS``), and say how many they hold.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Enough for every call of a demo or a test run to stay inspectable.
DEFAULT_RECORDS = 2000


class Recent(MutableMapping[K, V]):
    """A mapping that forgets its oldest entries beyond ``limit`` (insertion order)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a sandbox memory limit must be at least 1")
        self.limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __setitem__(self, key: K, value: V) -> None:
        self._items[key] = value
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def __delitem__(self, key: K) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
