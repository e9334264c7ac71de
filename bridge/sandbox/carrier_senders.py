"""What the sandbox carrier sends out, and signs: one HTTP session, the `delivery.Sender` of its
TwiML requests and callbacks (with the journal of what it sent), and the `StreamPlayer` of its
Media Streams. Open while the carrier runs (``sender`` and ``streams`` are None otherwise), and
signed again when the installation's auth token changes.
"""

from __future__ import annotations

import aiohttp

from bridge.sandbox.delivery import Sender
from bridge.sandbox.stream_caller import StreamPlayer


class Outgoing:
    def __init__(
        self, *, account_sid: str, retry_delay: float, journal_limit: int, records_limit: int
    ) -> None:
        self._account_sid = account_sid
        self._retry_delay = retry_delay
        self._journal_limit = journal_limit
        self._records_limit = records_limit
        self._session: aiohttp.ClientSession | None = None
        self.sender: Sender | None = None
        self.streams: StreamPlayer | None = None

    def open(self, auth_token: str) -> None:
        """Start sending, signed with ``auth_token``."""
        self._session = aiohttp.ClientSession()
        self.sender = Sender(
            self._session,
            auth_token,
            retry_delay=self._retry_delay,
            journal_limit=self._journal_limit,
        )
        self.streams = StreamPlayer(
            self._session, self._account_sid, auth_token, records_limit=self._records_limit
        )

    def sign_with(self, auth_token: str) -> None:
        """Sign from now on with another auth token."""
        if self.sender is not None:
            self.sender.sign_with(auth_token)
        if self.streams is not None:
            self.streams.sign_with(auth_token)

    async def close(self) -> None:
        """Stop the media streams, then the session."""
        if self.streams is not None:
            await self.streams.close()
            self.streams = None
        if self._session is not None:
            await self._session.close()
            self._session = None
            self.sender = None

    def memory(self) -> dict[str, tuple[int, int | None]]:
        """What is held in memory: structure -> (entries, limit or None)."""
        sizes: dict[str, tuple[int, int | None]] = {}
        if self.sender is not None:
            sizes["sandbox_sent_journal"] = (len(self.sender.journal), self._journal_limit)
        if self.streams is not None:
            sizes["sandbox_stream_stats"] = (len(self.streams.stats), self._records_limit)
            sizes["sandbox_streams"] = (self.streams.playing, None)
        return sizes
