"""POST /webhooks/elevenlabs: post-call webhooks, applied to attempts through the state machine.

The signature is checked before anything is parsed or stored. A report is joined to its attempt
by conversation id or by Twilio call SID, or else by the attempt its variables name (a call whose
create's answer was lost); one that matches no attempt is stored (a CallEvent not
applied) and reported in the answer and the log, never dropped.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from aiohttp import web
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.api.bodies import BadJson, loads, read_body
from bridge.api.errors import error_response
from bridge.app_keys import CONNECTIONS, SESSIONMAKER, SETTINGS
from bridge.telephony.elevenlabs import outcomes
from bridge.telephony.elevenlabs.signatures import signature_valid
from campaigns import followups, transitions
from campaigns.call_events import record_event
from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow
from campaigns.models import Attempt, CallEvent, Campaign

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

HANDLED = ("post_call_transcription", "call_initiation_failure")
# Post-call audio webhooks carry a whole call's audio in base64: a few MB for a long call.
WEBHOOK_LIMIT_BYTES = 32 * 1024**2


async def _attempt_for(
    request: web.Request,
    conversation_id: str | None,
    call_sid: str | None,
    attempt_ref: str | None = None,
) -> tuple[str, str | None, str] | None:
    """(attempt id, provider call id, agent connection) of the reported call, if we know it.

    ``attempt_ref``: the attempt the report names in its variables, for a call whose create's
    answer (and so its conversation id) was lost; only an attempt with no other conversation."""
    conditions = []
    if conversation_id:
        conditions.append(Attempt.conversation_id == conversation_id)
    if call_sid:
        conditions.append(Attempt.provider_call_id == call_sid)
    if attempt_ref and conversation_id:
        conditions.append(and_(Attempt.id == attempt_ref, Attempt.conversation_id.is_(None)))
    if not conditions:
        return None
    async with request.app[SESSIONMAKER]() as session:
        rows = (
            await session.execute(
                select(
                    Attempt.id,
                    Attempt.provider_call_id,
                    Attempt.conversation_id,
                    Campaign.agent_connection,
                )
                .join(Campaign, Campaign.id == Attempt.campaign_id)
                .where(or_(*conditions))
                .limit(3)
            )
        ).all()
    if not rows:
        return None
    # The conversation id names one conversation; a call SID could be shared by none other;
    # the attempt a report names is the last resort.
    best = next(
        (r for r in rows if conversation_id and r[2] == conversation_id),
        next((r for r in rows if call_sid and r[1] == call_sid), rows[0]),
    )
    return best[0], best[1], best[3]


async def _follow_ups(
    sm: async_sessionmaker[AsyncSession], attempt_id: str, update: CallUpdate, now: datetime
) -> None:
    """Follow-ups the conversation asked for (a callback, another number, a stop), read from
    the data collection items the campaign names."""
    if update.data_collection:
        await followups.from_report(
            sm, attempt_id, outcomes.collected_values(update.data_collection), now
        )


async def conversation_known(
    sm: async_sessionmaker[AsyncSession], attempt_id: str, conversation_id: str
) -> None:
    """The attempt's conversation is known (its WebSocket opened, or its create answered): it is
    stored, and a post-call report that came before it (a short call's can) is applied now."""
    async with sm.begin() as session:
        await session.execute(
            update(Attempt)
            .where(Attempt.id == attempt_id, Attempt.conversation_id.is_(None))
            .values(conversation_id=conversation_id)
        )
    await apply_waiting_reports(sm, attempt_id, conversation_id)


async def apply_waiting_reports(
    sm: async_sessionmaker[AsyncSession], attempt_id: str, conversation_id: str
) -> int:
    """Apply the post-call reports of ``conversation_id`` that came before the attempt knew its
    conversation (a short call's report can beat it), stored then as not applied. Returns how
    many were applied."""
    async with sm() as session:
        waiting = list(
            await session.scalars(
                select(CallEvent.id).where(
                    CallEvent.provider_call_id == conversation_id,
                    CallEvent.provider == outcomes.PROVIDER,
                    CallEvent.kind == "post_call_transcription",
                    CallEvent.applied.is_(False),
                )
            )
        )
    applied = 0
    for event_id in waiting:
        async with sm.begin() as session:
            event = await session.get(CallEvent, event_id, with_for_update=True)
            attempt = await session.scalar(
                select(Attempt).where(Attempt.id == attempt_id).with_for_update()
            )
            if event is None or event.applied or attempt is None:
                continue
            campaign = await session.get(Campaign, attempt.campaign_id)
            now = utcnow()
            update = outcomes.transcription(
                event.payload,
                provider_call_id=conversation_id,
                attempt_id=attempt.id,
                ends_call=campaign is not None and campaign.agent_connection == "native",
                received_at=event.received_at,
            )
            update = replace(update, stand_in_call_id=True)
            event.applied = True
            event.attempt_id = attempt.id
            await transitions.apply_event(session, attempt, update, now)
        applied += 1
        log.info("ElevenLabs report for %s applied once its conversation was known", attempt_id)
        await _follow_ups(sm, attempt_id, update, now)
    return applied


@routes.post("/webhooks/elevenlabs")
async def post_call(request: web.Request) -> web.Response:
    body = await read_body(request, WEBHOOK_LIMIT_BYTES)
    secret = request.app[SETTINGS].agent_webhook_secret
    header = request.headers.get("ElevenLabs-Signature", "")
    if not secret or not header or not signature_valid(secret, header, body):
        log.warning("rejected ElevenLabs webhook: bad, stale or missing signature")
        return error_response(401, "bad_signature", "invalid or expired ElevenLabs-Signature")
    try:
        envelope = loads(body)
    except BadJson as exc:
        return error_response(400, "bad_json", f"the webhook body: {exc}")
    if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
        return error_response(400, "bad_webhook", "expected {type, event_timestamp, data}")
    kind = envelope.get("type")
    if kind not in HANDLED:
        return web.json_response({"result": "ignored", "type": kind})
    data = envelope["data"]
    conversation_id = str(data.get("conversation_id") or "") or None
    call_sid = outcomes.call_sid_of(envelope)
    found = await _attempt_for(request, conversation_id, call_sid, outcomes.attempt_of(envelope))
    attempt_id, provider_call_id, connection = found or (None, None, None)
    registered = request.app[CONNECTIONS].get(connection or "")
    if (
        provider_call_id is None
        and conversation_id
        and registered is not None
        and registered.owns_call is not None
        and registered.owns_call(conversation_id)
    ):
        # An attempt that never learnt its call (the create's answer was lost), on a connection
        # whose calls are named by their conversation: the report tells it its call.
        provider_call_id = conversation_id
    known_call_id = provider_call_id or call_sid
    provider_call_id = known_call_id or conversation_id
    if not provider_call_id:
        return error_response(400, "bad_webhook", "no conversation_id or call SID")
    now = utcnow()
    if kind == "post_call_transcription":
        update = outcomes.transcription(
            envelope,
            provider_call_id=provider_call_id,
            attempt_id=attempt_id,
            # Calls ElevenLabs places itself send us no carrier callbacks: this report ends them.
            ends_call=registered is not None and registered.ended_by_report,
            received_at=now,
        )
    else:
        update = outcomes.initiation_failure(
            envelope, provider_call_id=provider_call_id, attempt_id=attempt_id, received_at=now
        )
    if known_call_id is None:
        # A report that beat the create's answer (or outlived its loss) names no call: the
        # conversation id keys it, but the attempt learns its call id from the provider.
        update = replace(update, stand_in_call_id=True)
    applied = await record_event(request.app[SESSIONMAKER], update)
    if kind == "post_call_transcription" and applied.attempt_id:
        await _follow_ups(request.app[SESSIONMAKER], applied.attempt_id, update, now)
    if applied.result == "unknown" and conversation_id and kind == "post_call_transcription":
        # The attempt may have learnt its conversation id between the look-up above and the
        # store: whichever of the two writes comes second applies the report (the relay's
        # record of the id looks for waiting reports too).
        found = await _attempt_for(request, conversation_id, None)
        if found is not None and await apply_waiting_reports(
            request.app[SESSIONMAKER], found[0], conversation_id
        ):
            return web.json_response({"result": "applied", "attempt_id": found[0], "type": kind})
    if applied.result == "unknown":
        log.warning(
            "ElevenLabs %s for unknown conversation %s stored, not applied", kind, conversation_id
        )
    return web.json_response(
        {"result": applied.result, "attempt_id": applied.attempt_id, "type": kind}
    )
