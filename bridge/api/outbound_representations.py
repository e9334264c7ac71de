"""How the ElevenLabs-compatible outbound campaigns API shows campaigns, leads, calls and
attention items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.api.elevenlabs_shared import unix_seconds
from bridge.api.outbound_policy import snapshot
from campaigns import followups
from campaigns.api_tables import OutboundCampaign
from campaigns.models import (
    Attempt,
    AttemptStatus,
    AttentionItem,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Disposition,
)
from campaigns.outbound import lead_counts

# A contact's final disposition as a lead's terminal disposition.
TERMINAL = {
    Disposition.ANSWERED: "completed",
    Disposition.VOICEMAIL: "completed",
    Disposition.VOICEMAIL_LEFT: "completed",
    Disposition.BUSY: "attempt_ceiling_reached",
    Disposition.NO_ANSWER: "attempt_ceiling_reached",
    Disposition.FAILED: "attempt_ceiling_reached",
    Disposition.DNC: "do_not_call",
    Disposition.EXPIRED: "campaign_ended",
    Disposition.CANCELLED: "cancelled",
    Disposition.REMOVED: "removed",
    # Follow-ups the person asked for that could not be honoured.
    Disposition.CALLBACK_TIME_INVALID: "callback_time_invalid",
    Disposition.CALLBACK_CEILING: "callback_ceiling_reached",
    Disposition.REDIRECT_NUMBER_INVALID: "redirect_number_invalid",
    Disposition.REDIRECT_CEILING: "redirect_ceiling_reached",
    Disposition.ATTEMPT_CEILING: "attempt_ceiling_reached",
}
# An attempt's outcome as a call's result, and as ElevenLabs' recipient status.
CALL_RESULT = {
    Disposition.ANSWERED: "answered",
    Disposition.VOICEMAIL: "voicemail",
    Disposition.BUSY: "busy",
    Disposition.NO_ANSWER: "no_answer",
    Disposition.FAILED: "failed",
}
OUTCOME = {"answered": "completed", "voicemail": "voicemail"}


def _status(campaign: Campaign, open_attention: int, live_calls: int) -> str:
    if campaign.status == CampaignStatus.CANCELLED:
        return "stopping" if live_calls else "stopped"
    if campaign.status == CampaignStatus.COMPLETED:
        return "completed"
    if open_attention:
        return "attention"
    if campaign.status == CampaignStatus.PAUSED:
        return "paused"
    return "active"


async def campaign_json(session: Any, campaign: Campaign, default_phone: str) -> dict[str, Any]:
    row = await session.get(OutboundCampaign, campaign.id)
    assert row is not None
    counts = await lead_counts(session, campaign.id)
    channel: dict[str, Any] = {
        "channel": "phone",
        "agent_phone_number_id": row.phone_number_id or default_phone,
    }
    if row.mode_config:
        channel["mode_config"] = row.mode_config
    updated = max(
        v
        for v in (campaign.created_at, campaign.started_at, campaign.completed_at, row.updated_at)
        if v is not None
    )
    return {
        "campaign_id": campaign.id,
        "call_name": campaign.name,
        "agent_id": campaign.agent_id or "",
        "agent_name": campaign.agent_id or "",
        "channel_config": channel,
        "status": _status(campaign, counts.open_attention, counts.live_calls),
        "policy": snapshot(row.policy, campaign),
        "variant": row.variant,
        "source": "api",
        "created_at_unix": unix_seconds(campaign.created_at),
        "scheduled_time_unix": unix_seconds(campaign.start_at) if campaign.start_at else None,
        "updated_at_unix": unix_seconds(updated),
        "target_concurrency_limit": campaign.concurrency,
        "channel": "phone",
        "mode": "voice",
        "counts": {
            "leads": counts.total,
            "terminal_leads": counts.finished,
            "open_attention": counts.open_attention,
        },
    }


def lead_json(contact: Contact, honoured: dict[str, int] | None = None) -> dict[str, Any]:
    """``honoured``: the lead's callbacks and redirects followed (followups.per_contact)."""
    numbers = [contact.phone_number, *(contact.alternate_numbers or [])]
    return {
        "lead_id": contact.id,
        "recipient_id": contact.external_id,
        "phone_number": contact.current_number,
        "phone_numbers": numbers,
        "phone_numbers_index": contact.number_index or 0,
        "user_id": contact.user_id or contact.phone_number,
        "attempt_count": contact.attempts_made,
        "failure_count": contact.failures_on_number or 0,
        "callback_count": (honoured or {}).get(followups.CALLBACK, 0),
        "redirect_count": (honoured or {}).get(followups.REDIRECT, 0),
        "do_not_call": contact.disposition
        in (Disposition.DNC, Disposition.REMOVED, Disposition.CANCELLED),
        "terminal_disposition": TERMINAL.get(contact.disposition or "", "couldnt_process")
        if contact.state == ContactState.DONE
        else None,
        "created_at_unix": unix_seconds(contact.created_at),
        "updated_at_unix": unix_seconds(contact.finished_at or contact.created_at),
        "dynamic_variables": dict(contact.dynamic_variables or {}),
        "overrides": _overrides(contact.agent_override),
    }


def _overrides(override: dict[str, Any] | None) -> dict[str, Any]:
    agent = (override or {}).get("agent") or {}
    tts = (override or {}).get("tts") or {}
    flat = {
        "language": agent.get("language"),
        "first_message": agent.get("first_message"),
        "prompt": (agent.get("prompt") or {}).get("prompt"),
        "voice_id": tts.get("voice_id"),
    }
    return {k: v for k, v in flat.items() if v is not None}


@dataclass(frozen=True)
class CallFollowUps:
    """What follow-ups made a call, and what a call's follow-ups decided."""

    # Why the call was placed: initial, retry, callback or redirect.
    intent: str = "initial"
    # A follow-up asked in the call and what the campaign did about it (followups.Decision).
    decision: str | None = None


def call_json(
    attempt: Attempt, contact: Contact, last: bool, follow: CallFollowUps | None = None
) -> dict[str, Any]:
    follow = follow or CallFollowUps("initial" if attempt.number == 1 else "retry")
    result = CALL_RESULT.get(attempt.outcome or "")
    if attempt.status in AttemptStatus.LIVE:
        status = "submitted"
    elif attempt.status == AttemptStatus.CANCELED:
        status = "cancelled"
    else:
        status = "completed"
    decision = None
    if status != "submitted" and follow.decision is not None:
        decision = follow.decision
    elif status != "submitted":
        if not last:
            decision = "retry_queued"
        elif contact.state == ContactState.DONE:
            decision = TERMINAL.get(contact.disposition or "", "couldnt_process")
            if decision == "completed" and result not in ("answered", "voicemail"):
                decision = "attempt_ceiling_reached"
        else:
            decision = "retry_queued"
    return {
        "intent_id": attempt.id,
        "lead_id": attempt.contact_id,
        "intent_type": follow.intent,
        "cold_attempt": attempt.number,
        "status": status,
        "phone_number": attempt.phone_number,
        "scheduled_time_unix": unix_seconds(attempt.scheduled_at),
        "conversation_id": attempt.conversation_id,
        "outcome": OUTCOME.get(result or "", "failed") if result else None,
        "call_result": result,
        "outcome_at_unix": unix_seconds(attempt.ended_at) if attempt.ended_at else None,
        "decision_disposition": decision,
        "direction": attempt.direction,
    }


def attention_json(item: AttentionItem) -> dict[str, Any]:
    resolution = (item.details or {}).get("resolution")
    return {
        "attention_id": item.id,
        "campaign_id": item.campaign_id or "",
        "reason": item.kind,
        "detail": f"{item.message} {item.remedy}".strip(),
        "status": "resolved" if item.resolved_at else "open",
        # A paused campaign's calls go ahead once resumed: every item callbridge raises is.
        "retryable": item.resolved_at is None,
        "resolution": resolution,
        "created_at_unix": unix_seconds(item.created_at),
        "updated_at_unix": unix_seconds(item.resolved_at or item.created_at),
    }
