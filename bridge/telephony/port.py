"""What a telephony package registers: its agent connections, each with the dialer that places
its calls and what the rest of the service needs to know about them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from campaigns.dialing import Dialer

if TYPE_CHECKING:
    from bridge.settings import Settings
    from bridge.telephony.elevenlabs.client import ElevenLabsClient

# Records the agent platform's conversation id on an attempt: (attempt id, conversation id).
ConversationStarted = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class DialerParts:
    """What a connection's dialer may be built from (opened and closed by the factory)."""

    settings: Settings
    # The carrier's own dialer: it places the calls of connections without a dialer of their
    # own, and answers about every call no other dialer owns.
    carrier: Dialer
    agents: ElevenLabsClient
    on_conversation: ConversationStarted


@dataclass(frozen=True)
class Connection:
    """One way a campaign's calls are placed and reach its agent (``agent_connection``)."""

    name: str
    # Who places the calls (each attempt records it; the API shows it).
    provider: str
    # Campaign settings a campaign on this connection cannot do without (the domain checks).
    needs: tuple[str, ...] = ()
    # No carrier callback will say the call ended: the agent's post-call report does.
    ended_by_report: bool = False
    # Builds the dialer that places this connection's calls; None: the carrier's dialer does.
    dialer: Callable[[DialerParts], Dialer] | None = None
    # Which provider call ids that dialer answers about (fetch, hang up); None: the carrier's.
    owns_call: Callable[[str], bool] | None = None
