"""Answering-machine verdicts whose callback never came.

A call answered under machine detection ends as "answered" until the AMD result says otherwise.
If that one callback is lost, a voicemail box would stay recorded as a person: once the call has
been over for a while with no verdict, the provider is asked, and the answer relabels the contact
(or "unknown" is recorded, so the question is asked once).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.call_updates import provider_call_update
from campaigns.clock import utcnow
from campaigns.dialing import Dialer
from campaigns.models import Answerer, Attempt, AttemptStatus, Campaign, MachineDetection
from campaigns.transitions import apply_event

log = logging.getLogger(__name__)

# Verdicts are looked for this far back; older calls are left as they are.
LOOKBACK = timedelta(hours=1)
BATCH = 200


async def refresh_missing_verdicts(
    sm: async_sessionmaker[AsyncSession], dialer: Dialer, older_than: timedelta
) -> int:
    now = utcnow()
    async with sm() as session:
        rows = list(
            (
                await session.execute(
                    select(Attempt.id, Attempt.provider_call_id)
                    .join(Campaign, Campaign.id == Attempt.campaign_id)
                    .where(
                        Campaign.machine_detection != MachineDetection.OFF,
                        # "completed" means answered, even when the "in-progress" callback
                        # that would have set answered_at was lost too.
                        Attempt.status == AttemptStatus.COMPLETED,
                        Attempt.answered_by.is_(None),
                        Attempt.provider_call_id.is_not(None),
                        Attempt.ended_at < now - older_than,
                        Attempt.ended_at > now - LOOKBACK,
                    )
                    .limit(BATCH)
                )
            ).all()
        )
    relabelled = 0
    for attempt_id, call_id in rows:
        try:
            call = await dialer.fetch_call(call_id)
        except Exception:
            log.exception("could not fetch call %s for its machine-detection verdict", call_id)
            continue
        async with sm.begin() as session:
            attempt = await session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is None or attempt.answered_by is not None:
                continue
            if call is None or not call.answered_by:
                # No verdict from the provider: shown as "unknown".
                attempt.answered_by = Answerer.UNKNOWN
                attempt.answerer = Answerer.UNKNOWN
                continue
            await apply_event(session, attempt, provider_call_update(call, now), now)
            relabelled += 1
    return relabelled
