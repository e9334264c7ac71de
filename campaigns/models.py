"""The tables callbridge owns: campaigns, contacts, attempts, call events, do-not-call entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaigns.base import Base
from campaigns.clock import utcnow


class CampaignStatus:
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class ContactState:
    PENDING = "pending"  # waiting for next_attempt_at
    IN_PROGRESS = "in_progress"  # an attempt is live
    DONE = "done"  # has a final disposition


class MachineDetection:
    """Whether, and how far, to listen for an answering machine once a call is answered: a
    campaign's (or a contact's) setting, stored and shown as these values. They are spelled like
    one provider's parameter values, but they are the domain's own: each provider's dialer says
    what each one means to it."""

    OFF = ""
    # Tell whether a machine answered, as soon as that is known.
    DETECT = "Enable"
    # Also wait for the machine's greeting to end, so a message left after it is recorded.
    UNTIL_GREETING_ENDS = "DetectMessageEnd"

    ALL = (UNTIL_GREETING_ENDS, DETECT, OFF)


class Answerer:
    """Who (or what) answered a call, in the domain's words: the provider's adapter classifies its
    own answered-by value into one of these. The provider's value is kept beside it
    (Attempt.answered_by), as it is what users see."""

    HUMAN = "human"
    # An answering machine whose greeting may still be playing.
    MACHINE = "machine"
    # An answering machine whose greeting has ended: a message left now is recorded.
    MACHINE_GREETING_OVER = "machine_greeting_over"
    FAX = "fax"
    UNKNOWN = "unknown"

    # Nobody picked up in person: the call ends as a voicemail.
    NOT_A_PERSON = frozenset({MACHINE, MACHINE_GREETING_OVER, FAX})
    MACHINES = frozenset({MACHINE, MACHINE_GREETING_OVER})


class Disposition:
    ANSWERED = "answered"
    VOICEMAIL = "voicemail"
    VOICEMAIL_LEFT = "voicemail_left"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    DNC = "dnc"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REMOVED = "removed"
    # Ends of a follow-up the person asked for that could not be honoured (campaigns.followups).
    CALLBACK_TIME_INVALID = "callback_time_invalid"
    CALLBACK_CEILING = "callback_ceiling_reached"
    REDIRECT_NUMBER_INVALID = "redirect_number_invalid"
    REDIRECT_CEILING = "redirect_ceiling_reached"
    ATTEMPT_CEILING = "attempt_ceiling_reached"

    # Reported even when zero; the others appear once they occur.
    ALL = (ANSWERED, VOICEMAIL, BUSY, NO_ANSWER, FAILED)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    agent_id: Mapped[str | None] = mapped_column(String(200))
    from_number: Mapped[str | None] = mapped_column(String(32))
    default_region: Mapped[str] = mapped_column(String(2), default="US")
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT, index=True)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    retry_delay_seconds: Mapped[int] = mapped_column(Integer, default=300)
    concurrency: Mapped[int] = mapped_column(Integer, default=5)
    cps: Mapped[float | None] = mapped_column(default=None)
    machine_detection: Mapped[str] = mapped_column(
        String(32), default=MachineDetection.UNTIL_GREETING_ENDS
    )
    # How the campaign's calls are placed and reach the agent: one of the names the telephony
    # edge registers (the domain only checks it against them, at create and edit).
    agent_connection: Mapped[str] = mapped_column(
        String(16), default="stream", server_default="stream"
    )
    # The agent platform's id of the number that places the calls, for connections that need one.
    agent_phone_number_id: Mapped[str | None] = mapped_column(String(200))
    ring_timeout_seconds: Mapped[int] = mapped_column(Integer, default=30)
    time_limit_seconds: Mapped[int] = mapped_column(Integer, default=600)
    start_at: Mapped[datetime | None]
    # Contacts not finished by then get disposition "expired".
    end_at: Mapped[datetime | None]
    # The zone of numbers with no zone of their own (unknown, toll-free, country-wide), and of
    # the cron schedule.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # [{weekdays: [0..6], start: "HH:MM", end: "HH:MM"}] in the recipient's local time; None: any.
    calling_periods: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    rule_set: Mapped[str | None] = mapped_column(String(32))  # "us_tcpa"
    retry_rules: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    max_attempts_per_day: Mapped[int | None] = mapped_column(Integer)
    # Contacts with several numbers move to the next one after this many failures in a row.
    max_failures_per_number: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    # When set, a contact whose last number reached max_failures_per_number is not called again
    # (otherwise it keeps being called on that number up to max_attempts).
    end_after_number_failures: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Calls a calling window allows after the first; then the next call waits for a later window,
    # placed at its start, at random, or rotated by rotate_step_seconds (policy.place). None: no
    # limit per window (only the retry delay and max_attempts).
    max_short_retries: Mapped[int | None] = mapped_column(Integer)
    interval_placement: Mapped[str | None] = mapped_column(String(8))
    rotate_step_seconds: Mapped[int | None] = mapped_column(Integer)
    # The number types (phones.NUMBER_TYPE_NAMES) the campaign calls; None: the default types.
    allowed_number_types: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    voicemail_policy: Mapped[str] = mapped_column(
        String(16), default="hang_up", server_default="hang_up"
    )
    voicemail_message: Mapped[str | None] = mapped_column(Text)
    # Recurring campaigns: a crontab (5 fields; a 6th, leading, for seconds) read in `timezone`,
    # releasing the named contact list as a new batch at every firing.
    schedule_cron: Mapped[str | None] = mapped_column(String(100))
    schedule_list: Mapped[str | None] = mapped_column(String(100))
    # The earliest instant the next dial may go out: calls-per-second pacing shared by all nodes.
    next_dial_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]

    contacts: Mapped[list[Contact]] = relationship(back_populates="campaign", lazy="raise")


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        # A number appears once per campaign and scope: CSV rows share the empty scope (so intake
        # finds duplicates); each single call has a scope of its own (a number may be called
        # again and again through the API).
        UniqueConstraint(
            "campaign_id", "phone_number", "dedupe_scope", name="uq_contacts_campaign_phone_scope"
        ),
        UniqueConstraint("idempotency_key", name="uq_contacts_idempotency_key"),
        # The dispatcher's claim: due pending contacts of one campaign, earliest first.
        Index("ix_contacts_due", "campaign_id", "state", "next_attempt_at"),
        # A campaign's counts (contact_counts) read this index alone, never the contact rows.
        Index("ix_contacts_counts", "campaign_id", "state", "disposition", "attempts_made"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200))
    phone_number: Mapped[str] = mapped_column(String(32))
    dedupe_scope: Mapped[str] = mapped_column(String(32), default="", server_default="")
    # Further numbers (E.164) tried in order once the current one keeps failing.
    alternate_numbers: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    number_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failures_on_number: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    time_zones: Mapped[list[Any]] = mapped_column(default=list)
    dynamic_variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    row_number: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=ContactState.PENDING)
    attempts_made: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    # A reminder's time: the first attempt is not made before it.
    call_at: Mapped[datetime | None]
    # Repeating a request with the same key returns this contact instead of a second call.
    # Stored as a hash of (API key, Idempotency-Key): each API key has a key space of its own
    # (campaigns.single_calls.Idempotency).
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # A hash of the request that used idempotency_key: the same key with another request is refused.
    idempotency_request_hash: Mapped[str | None] = mapped_column(String(64))
    disposition: Mapped[str | None] = mapped_column(String(32))
    # What the request that added the contact asked of the agent: settings that replace the
    # agent's own for this conversation (the agent decides whether it allows them), and the
    # id the requester knows the person by. Sent with the dynamic variables when the call opens.
    agent_override: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    user_id: Mapped[str | None] = mapped_column(String(200))
    # This contact's own call settings over the campaign's (CallOptions keys: ring_timeout_seconds,
    # machine_detection, record); None: the campaign's.
    call_options: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    campaign: Mapped[Campaign] = relationship(back_populates="contacts", lazy="raise")

    @property
    def current_number(self) -> str:
        """The number dialled now: the first one, or an alternate once it kept failing."""
        if self.number_index and self.number_index <= len(self.alternate_numbers or []):
            return str(self.alternate_numbers[self.number_index - 1])
        return self.phone_number


class AttemptStatus:
    # Committed before the provider is asked to dial; no provider call id yet.
    DIALING = "dialing"
    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"
    # Reconciliation proved the provider never created the call: it does not count as an attempt.
    NOT_PLACED = "not_placed"

    TERMINAL = frozenset({COMPLETED, BUSY, NO_ANSWER, FAILED, CANCELED, NOT_PLACED})
    LIVE = frozenset({DIALING, QUEUED, INITIATED, RINGING, IN_PROGRESS})


class Direction:
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_campaign_status", "campaign_id", "status"),
        Index("ix_attempts_contact", "contact_id"),
        # Housekeeping and /metrics look for live attempts (and recent completed ones) across
        # campaigns: through this index they read those few, not every attempt ever made.
        Index("ix_attempts_status_ended", "status", "ended_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1 for the contact's first attempt
    phone_number: Mapped[str] = mapped_column(String(32))
    # Who placed the call (or, for a call back, whose number took it): the telephony package of
    # the campaign's connection names it (Dialer.provider_of).
    provider: Mapped[str] = mapped_column(String(16))
    # outbound: dialled by the campaign; inbound: the contact called one of its numbers back.
    direction: Mapped[str] = mapped_column(
        String(16), default="outbound", server_default="outbound"
    )
    provider_call_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=AttemptStatus.DIALING)
    last_sequence: Mapped[int] = mapped_column(Integer, default=-1)
    # The provider's own answered-by value (shown to users), and its class (Answerer).
    answered_by: Mapped[str | None] = mapped_column(String(32))
    answerer: Mapped[str | None] = mapped_column(String(24))
    outcome: Mapped[str | None] = mapped_column(String(16))
    ring_seconds: Mapped[int | None] = mapped_column(Integer)
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    sip_response_code: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(32))
    # The provider's error code classified by its adapter (campaigns.failures.ErrorClass).
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    # What was done on reaching an answering machine: "hung_up" or "message_left".
    voicemail_action: Mapped[str | None] = mapped_column(String(16))
    conversation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The audio stream that connected the answered call to its agent, set once when it starts:
    # a call has one, so a second stream for the call (a replayed token) finds it taken.
    media_stream_id: Mapped[str | None] = mapped_column(String(64))
    transcript_summary: Mapped[str | None] = mapped_column(Text)
    # From the agent's post-call webhook: [{role, message, time_in_call_secs, ...}].
    transcript: Mapped[list[Any] | None] = mapped_column(JSON)
    call_successful: Mapped[str | None] = mapped_column(String(16))  # success|failure|unknown
    # Written while the call is live, turn by turn: [{role, message, time_in_call_secs}].
    live_transcript: Mapped[list[Any] | None] = mapped_column(JSON)
    # Tools the agent asked the call's side to run: [{tool_name, tool_call_id, is_error}].
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSON)
    # Why the agent ended the conversation on an error, in its own words.
    agent_error: Mapped[str | None] = mapped_column(Text)
    data_collection: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    conversation_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    # When the dial is due (its pacing slot), and after when another node may reconcile it.
    scheduled_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None] = mapped_column(index=True)
    dialed_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class CallEvent(Base):
    """Every provider callback exactly as received: the audit trail and the source of replays."""

    __tablename__ = "call_events"
    __table_args__ = (
        # A provider may deliver a callback twice: the second copy is recognised, stored once.
        UniqueConstraint("provider", "dedupe_key", name="uq_call_events_dedupe"),
        # Retention deletes the oldest (campaigns/retention.py) without reading the whole table.
        Index("ix_call_events_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))  # status | amd | ...
    dedupe_key: Mapped[str] = mapped_column(String(128))
    provider_call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    attempt_id: Mapped[str | None] = mapped_column(String(32), index=True)
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    applied: Mapped[bool] = mapped_column(default=False)


class DncEntry(Base):
    """A number that must not be called: globally (campaign_id NULL) or within one campaign."""

    __tablename__ = "dnc_entries"
    __table_args__ = (UniqueConstraint("phone_number", "campaign_id", name="uq_dnc_number_scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone_number: Mapped[str] = mapped_column(String(32), index=True)
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AttentionItem(Base):
    """Something an operator has to fix, e.g. a campaign paused because its calls keep failing."""

    __tablename__ = "attention_items"
    __table_args__ = (Index("ix_attention_items_campaign", "campaign_id", "resolved_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # circuit_breaker
    code: Mapped[str | None] = mapped_column(String(32))  # the provider's error code
    message: Mapped[str] = mapped_column(Text)  # what is wrong
    remedy: Mapped[str] = mapped_column(Text)  # how to fix it
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]


class ContactListEntry(Base):
    """A named list another system keeps up to date (today's appointments, say)."""

    __tablename__ = "contact_list_entries"
    __table_args__ = (
        UniqueConstraint("list_name", "phone_number", name="uq_contact_list_entries_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    list_name: Mapped[str] = mapped_column(String(100), index=True)
    phone_number: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(200))
    time_zones: Mapped[list[Any]] = mapped_column(default=list)
    dynamic_variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    row_number: Mapped[int | None] = mapped_column(Integer)


class ScheduleFiring(Base):
    """One release of a recurring campaign: its key makes a second release of it impossible."""

    __tablename__ = "schedule_firings"

    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    fire_at: Mapped[datetime] = mapped_column(primary_key=True)
    contacts: Mapped[int] = mapped_column(Integer, default=0)
    released_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportRun(Base):
    """A file being imported on SQLite, whose rows wait in a staging table until it is decided.

    SQLite has one writer: a large import stored in one transaction would hold every other
    request for its whole length. It is staged and published in short transactions instead
    (campaigns.intake.staging); this row says how far it got, for housekeeping after a crash.
    """

    __tablename__ = "import_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # contacts | dnc
    # The campaign imported into (contacts) or whose list it is (dnc); NULL: the global list.
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # staging: nothing of it is visible yet, and a failure discards it.
    # publishing: the whole file was read and checked; it is moved over in short transactions.
    state: Mapped[str] = mapped_column(String(16))
    # Touched at every batch: a run not touched for a while has lost its process.
    heartbeat_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StagedContact(Base):
    """A contact of an ImportRun not yet published; stored as contacts stores it."""

    __tablename__ = "staged_contacts"
    # A number appears once per file: a repeat is the file's own duplicate.
    __table_args__ = (
        UniqueConstraint("import_id", "phone_number", name="uq_staged_contacts"),
        # Published and discarded in seq ranges (intake.staging).
        Index("ix_staged_contacts_chunk", "import_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    import_id: Mapped[str] = mapped_column(ForeignKey("import_runs.id", ondelete="CASCADE"))
    id: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(200))
    phone_number: Mapped[str] = mapped_column(String(32))
    raw: Mapped[str] = mapped_column(Text)  # the phone cell as written, for the report
    alternate_numbers: Mapped[list[Any]] = mapped_column(JSON)
    time_zones: Mapped[list[Any]]
    dynamic_variables: Mapped[dict[str, Any]]
    row_number: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    call_at: Mapped[datetime | None]


class StagedDncEntry(Base):
    """A number of a do-not-call ImportRun not yet published."""

    __tablename__ = "staged_dnc_entries"
    __table_args__ = (
        UniqueConstraint("import_id", "phone_number", name="uq_staged_dnc_entries"),
        Index("ix_staged_dnc_entries_chunk", "import_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    import_id: Mapped[str] = mapped_column(ForeignKey("import_runs.id", ondelete="CASCADE"))
    phone_number: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(200))


class FollowUpSettings(Base):
    """What a campaign does with the follow-ups its conversations ask for (campaigns.followups).

    A campaign without a row acts on follow-ups asked live (the agent's client tools) with no cap
    but its max_attempts, and reads none from conversation reports.
    """

    __tablename__ = "follow_up_settings"

    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    # Callbacks honoured per lead and redirects followed per lead; None: no cap of their own.
    max_callbacks: Mapped[int | None] = mapped_column(Integer)
    max_redirects: Mapped[int | None] = mapped_column(Integer)
    # The conversation report's data collection items that carry each request; None: not read.
    callback_item: Mapped[str | None] = mapped_column(String(200))
    redirect_item: Mapped[str | None] = mapped_column(String(200))
    stop_item: Mapped[str | None] = mapped_column(String(200))
    # {data collection item: dynamic variable}: results copied onto the contact for later calls.
    mappings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What follow-up calls are told of the call before (followups.CONTEXT names).
    context: Mapped[list[Any]] = mapped_column(JSON, default=list)


class FollowUpRequest(Base):
    """A follow-up a person asked for during one call: a callback at a time, a call on another
    number, or never to be called again, with what the campaign decided about it."""

    __tablename__ = "follow_up_requests"
    __table_args__ = (
        # Asked once per call and kind: the live tool and the report of the same call, or a
        # report delivered twice, record it once.
        UniqueConstraint("attempt_id", "kind", name="uq_follow_up_requests_attempt_kind"),
        Index("ix_follow_up_requests_campaign", "campaign_id", "kind"),
        Index("ix_follow_up_requests_contact", "contact_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # callback | redirect | stop
    # What the person asked for, as it came (a time, a number); empty for a stop.
    asked: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(16))  # live_call | report
    # What the campaign decided (follow_up_steps.Decision); why, in words, when it refused.
    decision: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    # A callback's instant, a redirect's number (E.164), when honoured.
    call_at: Mapped[datetime | None]
    phone_number: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    # When it was applied to the contact: a request made while its call was live waits for the
    # call's end, which it then decides instead of the retry policy.
    applied_at: Mapped[datetime | None]
