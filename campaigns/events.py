"""Domain events: what happened to attempts, contacts and campaigns, for whoever listens.

Events are collected on the session while a transaction runs. ``before_commit`` listeners run
inside that transaction (so an outbox row commits with the change it reports, or not at all);
``after_commit`` listeners run once it is durable (metrics, wake-ups).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_KEY = "callbridge.domain_events"


@dataclass(frozen=True)
class AttemptEnded:
    attempt_id: str
    campaign_id: str
    contact_id: str
    status: str
    outcome: str | None


@dataclass(frozen=True)
class AttemptNotPlaced:
    """An attempt ended with no call made (refused for now, stopped before its create, or a
    create without a clear answer that the provider never made): it frees its slot, and
    whoever remembered it as placed forgets it. No call ended, so no call webhook."""

    attempt_id: str
    campaign_id: str
    contact_id: str


@dataclass(frozen=True)
class ContactFinished:
    contact_id: str
    campaign_id: str
    disposition: str


@dataclass(frozen=True)
class CampaignCompleted:
    campaign_id: str


@dataclass(frozen=True)
class ContactsDue:
    """Contacts may be dialled now: a campaign started or resumed, or contacts were added or
    reopened in it. (An attempt that ended frees a slot: AttemptEnded says so.)"""

    campaign_id: str


DomainEvent = AttemptEnded | AttemptNotPlaced | ContactFinished | CampaignCompleted | ContactsDue
Listener = Callable[[Session, list[Any]], None]


def emit(session: Any, event_: DomainEvent) -> None:
    """Record an event on an (async or sync) session; it is published when the session commits."""
    info = session.info
    info.setdefault(_KEY, []).append(event_)


class EventBus:
    """Listeners for the domain events of one sessionmaker's sessions."""

    def __init__(self) -> None:
        self.before_commit: list[Listener] = []
        self.after_commit: list[Callable[[list[Any]], None]] = []

    def attach(self, sync_session_class: type[Session]) -> None:
        event.listen(sync_session_class, "before_commit", self._before_commit)
        event.listen(sync_session_class, "after_commit", self._after_commit)
        event.listen(sync_session_class, "after_rollback", self._after_rollback)

    def _before_commit(self, session: Session) -> None:
        events = session.info.get(_KEY)
        if events:
            for listener in self.before_commit:
                listener(session, list(events))

    def _after_commit(self, session: Session) -> None:
        events = session.info.pop(_KEY, None)
        if events:
            for listener in self.after_commit:
                listener(events)

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_KEY, None)
