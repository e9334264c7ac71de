"""What the domain hears about a call: one provider event, parsed from its wire format."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campaigns.dialing import ProviderCall


@dataclass(frozen=True)
class CallUpdate:
    """One provider event, already parsed from its wire format."""

    provider: str
    provider_call_id: str
    kind: str  # "status" or "amd"
    received_at: datetime
    raw: dict[str, Any] = field(default_factory=dict)
    attempt_id: str | None = None
    status: str | None = None
    # The update's ordinal among the call's status updates (the adapter fills it from the
    # provider's own numbering), so a repeated update is recognised.
    sequence: int | None = None
    # The provider's answered-by value as it gave it, and its class (models.Answerer) as the
    # provider's adapter classified it.
    answered_by: str | None = None
    answerer: str | None = None
    duration_seconds: int | None = None
    sip_response_code: int | None = None
    error_code: str | None = None
    # error_code classified by the provider's adapter (campaigns.failures.ErrorClass).
    error_class: str | None = None
    error_message: str | None = None
    # What the agent's post-call report says about the conversation (None: not reported).
    conversation_id: str | None = None
    transcript: list[Any] | None = None
    transcript_summary: str | None = None
    call_successful: str | None = None
    data_collection: dict[str, Any] | None = None
    conversation_seconds: int | None = None
    # True when provider_call_id only stands in (a conversation id) for a call whose provider id
    # the reporter did not know: it keys the event, and is never taken as the attempt's call id.
    stand_in_call_id: bool = False

    @property
    def dedupe_key(self) -> str:
        if self.kind == "status":
            # ``sequence`` is the update's ordinal among the call's status updates, as the
            # provider's adapter numbers them; the status guards against a missing ordinal.
            return f"{self.provider_call_id}:status:{self.sequence}:{self.status}"
        return f"{self.provider_call_id}:{self.kind}"


def provider_call_update(call: ProviderCall, now: datetime) -> CallUpdate:
    return CallUpdate(
        provider="reconcile",
        provider_call_id=call.call_id,
        kind="status",
        received_at=now,
        status=call.status,
        answered_by=call.answered_by,
        answerer=call.answerer,
        duration_seconds=call.duration_seconds,
    )
