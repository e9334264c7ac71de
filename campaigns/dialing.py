"""What the domain asks of a telephony provider: the Dialer protocol and its plain value types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class DialRequest:
    attempt_id: str
    campaign_id: str
    contact_id: str
    to: str
    from_number: str | None
    agent_id: str | None
    machine_detection: str | None
    ring_timeout_seconds: int
    time_limit_seconds: int
    dynamic_variables: dict[str, Any] = field(default_factory=dict)
    # The campaign's agent connection (a name the edge registered): which Dialer places the call
    # and how the agent joins it.
    agent_connection: str = "stream"
    agent_phone_number_id: str | None = None
    # Record the call at the provider.
    record: bool = False
    # Sent to the agent with the dynamic variables (Contact.agent_override, Contact.user_id).
    agent_override: dict[str, Any] | None = None
    user_id: str | None = None


def call_option(options: dict[str, Any] | None, name: str, default: Any) -> Any:
    """A contact's own call setting (Contact.call_options) where it has one, else ``default``."""
    value = (options or {}).get(name)
    return default if value is None else value


@dataclass(frozen=True)
class ProviderCall:
    """A call as the provider reports it when asked (list or fetch)."""

    call_id: str
    to: str
    status: str
    created_at: datetime | None = None
    answered_by: str | None = None
    # answered_by classified by the provider's adapter (campaigns.models.Answerer).
    answerer: str | None = None
    duration_seconds: int | None = None


class DialRefused(Exception):
    """The provider answered and created nothing."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        error_class: str | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        # The provider's code classified by its adapter (campaigns.failures.ErrorClass).
        self.error_class = error_class


class DialAmbiguous(Exception):
    """The request may have reached the provider: the call may or may not exist."""


class Dialer(Protocol):
    def can_list_calls(self, agent_connection: str) -> bool:
        """Whether find_calls lists the calls placed for ``agent_connection``: when it cannot,
        a call missing from the list may still have been made, and an unanswered create waits
        for the call's own report instead of being taken as not placed."""
        ...

    def provider_of(self, agent_connection: str) -> str:
        """The provider that places the calls of ``agent_connection``, as attempts record it."""
        ...

    async def place_call(self, request: DialRequest) -> str:
        """Ask the provider to dial; return its call id. Raises DialRefused or DialAmbiguous."""
        ...

    async def find_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        """Calls to ``to`` created at or after ``since`` (for reconciling ambiguous creates)."""
        ...

    async def fetch_call(self, call_id: str) -> ProviderCall | None: ...

    async def hang_up(self, call_id: str) -> None: ...


def lists_calls(dialer: Dialer, agent_connection: str) -> bool:
    """``dialer.can_list_calls(agent_connection)``; a dialer that does not say is trusted to
    list its calls (find_calls was the only question before this one)."""
    check = getattr(dialer, "can_list_calls", None)
    return True if check is None else bool(check(agent_connection))
