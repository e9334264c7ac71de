"""Configuration from the environment."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bridge.fault_plan import Faults

# Sandbox credentials: shaped like real ones, so the SDK and the signature code run unchanged.
SANDBOX_ACCOUNT_SID = "AC" + "0" * 32
SANDBOX_AUTH_TOKEN = "sandbox-auth-token-0000000000000"
SANDBOX_FROM_NUMBER = "+15005550006"
# The sandbox agent's credentials, shaped like ElevenLabs' own.
SANDBOX_ELEVENLABS_API_KEY = "sk_sandbox_" + "0" * 38
SANDBOX_ELEVENLABS_WEBHOOK_SECRET = "wsec_sandbox_" + "0" * 32


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this machine only."""
    host = host.strip().strip("[]").lower()
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name (or all interfaces: "", 0.0.0.0, ::) may be reached from afar


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return float(raw) if raw not in (None, "") else default


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false")


def _window_margin(env: Mapping[str, str]) -> float:
    value = _float(env, "CALLBRIDGE_WINDOW_MARGIN_SECONDS", 0.3)
    # Above 30 s the check at the send would no longer see every close (see CallingHours).
    if not 0 <= value <= 30:
        raise ValueError("CALLBRIDGE_WINDOW_MARGIN_SECONDS must be between 0 and 30")
    return value


def _at_least_one(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        raise ValueError(f"{name} must be a whole number") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1")
    return value


def _retention_days(env: Mapping[str, str]) -> float:
    value = _float(env, "CALLBRIDGE_RETENTION_DAYS", 90.0)
    if value < 0:
        raise ValueError("CALLBRIDGE_RETENTION_DAYS must be 0 (keep everything) or more")
    return value


def _log_format(raw: str | None) -> str:
    value = (raw or "text").strip().lower()
    if value not in ("text", "json"):
        raise ValueError("CALLBRIDGE_LOG_FORMAT must be 'text' or 'json'")
    return value


DEFAULT_INBOUND_MESSAGE = (
    "Thank you for calling. We cannot take your call on this number right now. Goodbye."
)
INBOUND_PATH = "/webhooks/twilio/inbound"


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///callbridge.db"
    api_keys: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    telephony: str = "sandbox"
    twilio_account_sid: str = SANDBOX_ACCOUNT_SID
    twilio_auth_token: str = field(default=SANDBOX_AUTH_TOKEN, repr=False)
    # Where the Twilio SDK sends requests; None means the real Twilio (or our mounted sandbox).
    twilio_api_base_url: str | None = None
    sandbox_ring_seconds: float = 0.2
    sandbox_talk_seconds: float = 0.5
    # How long a provider request may take before it is treated as ambiguous.
    provider_timeout_seconds: float = 10.0
    # Kept before a calling window closes, on top of the slowest recent create's round trip: a
    # dial starts only if its create surely reaches the provider inside the window.
    window_margin_seconds: float = 0.3
    dispatch_batch_size: int = 200
    default_from_number: str | None = None
    housekeeping_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    migrate_on_start: bool = True
    # Injected sandbox faults (bridge/fault_plan.py); none by default.
    sandbox_faults: Faults = field(default_factory=Faults)
    # A sandbox carrier running as its own process (`callbridge sandbox`), used instead of
    # mounting one: what several nodes on one database share.
    sandbox_url: str | None = None
    # "text" (readable) or "json" (one object per line, for log shippers).
    log_format: str = "text"
    # A live call is asked about this long after its ring timeout and time limit have passed.
    stale_call_slack_seconds: float = 60.0
    # A create left without an answer, on a provider that cannot list its calls, waits this long
    # after its call's ring timeout and time limit have passed for the call's report, then ends
    # unconfirmed (counted, not retried). The report follows the call's end once the provider has
    # analysed it: usually within a minute, so five leave room for a slow or retried delivery.
    unconfirmed_grace_seconds: float = 300.0
    # The most PostgreSQL connections one node opens (None: 10 pooled + 20 overflow). Several
    # nodes must fit in the server's max_connections together.
    db_pool_size: int | None = None
    # ElevenLabs: API key (register-call, outbound-call, signed URLs), post-call webhook secret,
    # and the API's base URL (None: the real API, or the mounted sandbox agent in sandbox mode).
    elevenlabs_api_key: str | None = field(default=None, repr=False)
    elevenlabs_webhook_secret: str | None = field(default=None, repr=False)
    elevenlabs_url: str | None = None
    # Signs the dashboard's stream tickets; None: a random secret per process.
    dashboard_secret: str | None = field(default=None, repr=False)
    # A caller who matches no contact reaches this agent; without one they hear the message.
    inbound_agent_id: str | None = None
    inbound_message: str = DEFAULT_INBOUND_MESSAGE
    # API requests per minute per key (token bucket); a key may set its own.
    rate_limit_per_minute: int = 600
    # Outgoing webhooks: the first retry's delay (doubling up to the max), how long to keep
    # retrying, how often the outbox is polled, and how long a receiver may take to answer.
    webhook_retry_base_seconds: float = 10.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_retry_window_hours: float = 24.0
    webhook_poll_seconds: float = 2.0
    webhook_timeout_seconds: float = 10.0
    # Outgoing webhooks may reach loopback, private and CGNAT addresses: for a closed network
    # whose receivers have no public address. Link-local, metadata, multicast, reserved
    # addresses and the service's own API stay refused (bridge/outgoing/guard.py).
    webhook_allow_private_targets: bool = False
    # Sandbox rehearsals only: run the clock this many seconds ahead (or behind, negative).
    clock_offset_seconds: float = 0.0
    # What the sandbox keeps in memory for inspection (README "Steady for weeks"): per-call
    # records (conversations, media stream statistics, TwiML updates) of the newest calls, and
    # the entries of its journal of requests sent.
    sandbox_memory_records: int = 2000
    sandbox_journal_entries: int = 5000
    # Call events, webhook deliveries and the sandbox's call log older than this are deleted by
    # housekeeping; 0 keeps everything. Contacts, attempts and campaigns are never pruned.
    retention_days: float = 90.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        telephony = env.get("CALLBRIDGE_TELEPHONY", "sandbox").strip().lower() or "sandbox"
        if telephony not in ("sandbox", "twilio"):
            raise ValueError("CALLBRIDGE_TELEPHONY must be 'sandbox' or 'twilio'")
        sid = env.get("TWILIO_ACCOUNT_SID", "")
        token = env.get("TWILIO_AUTH_TOKEN", "")
        if telephony == "twilio" and not (sid and token):
            raise ValueError(
                "CALLBRIDGE_TELEPHONY=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            )
        if telephony != "sandbox" and env.get("CALLBRIDGE_CLOCK_OFFSET_SECONDS"):
            raise ValueError("CALLBRIDGE_CLOCK_OFFSET_SECONDS is for sandbox rehearsals only")
        return cls(
            database_url=env.get("CALLBRIDGE_DATABASE_URL") or cls.database_url,
            api_keys=_csv(env, "CALLBRIDGE_API_KEYS"),
            host=env.get("CALLBRIDGE_HOST") or cls.host,
            port=int(env.get("CALLBRIDGE_PORT") or cls.port),
            public_url=(env.get("CALLBRIDGE_PUBLIC_URL") or None),
            telephony=telephony,
            twilio_account_sid=sid or SANDBOX_ACCOUNT_SID,
            twilio_auth_token=token or SANDBOX_AUTH_TOKEN,
            twilio_api_base_url=env.get("CALLBRIDGE_TWILIO_API_URL") or None,
            sandbox_ring_seconds=_float(env, "CALLBRIDGE_SANDBOX_RING_SECONDS", 0.2),
            sandbox_talk_seconds=_float(env, "CALLBRIDGE_SANDBOX_TALK_SECONDS", 0.5),
            provider_timeout_seconds=_float(env, "CALLBRIDGE_PROVIDER_TIMEOUT_SECONDS", 10.0),
            window_margin_seconds=_window_margin(env),
            default_from_number=env.get("CALLBRIDGE_FROM_NUMBER") or None,
            housekeeping_seconds=_float(env, "CALLBRIDGE_HOUSEKEEPING_SECONDS", 5.0),
            shutdown_grace_seconds=_float(env, "CALLBRIDGE_SHUTDOWN_GRACE_SECONDS", 10.0),
            migrate_on_start=env.get("CALLBRIDGE_MIGRATE_ON_START", "1") not in ("0", "false"),
            clock_offset_seconds=_float(env, "CALLBRIDGE_CLOCK_OFFSET_SECONDS", 0.0),
            sandbox_faults=Faults.parse(env.get("CALLBRIDGE_SANDBOX_FAULTS")),
            sandbox_url=(env.get("CALLBRIDGE_SANDBOX_URL") or "").rstrip("/") or None,
            log_format=_log_format(env.get("CALLBRIDGE_LOG_FORMAT")),
            stale_call_slack_seconds=_float(env, "CALLBRIDGE_STALE_CALL_SLACK_SECONDS", 60.0),
            unconfirmed_grace_seconds=_float(env, "CALLBRIDGE_UNCONFIRMED_GRACE_SECONDS", 300.0),
            db_pool_size=int(env["CALLBRIDGE_DB_POOL_SIZE"])
            if env.get("CALLBRIDGE_DB_POOL_SIZE")
            else None,
            elevenlabs_api_key=env.get("ELEVENLABS_API_KEY") or None,
            elevenlabs_webhook_secret=env.get("ELEVENLABS_WEBHOOK_SECRET") or None,
            elevenlabs_url=env.get("CALLBRIDGE_ELEVENLABS_URL") or None,
            dashboard_secret=env.get("CALLBRIDGE_DASHBOARD_SECRET") or None,
            inbound_agent_id=env.get("CALLBRIDGE_INBOUND_AGENT_ID") or None,
            inbound_message=(env.get("CALLBRIDGE_INBOUND_MESSAGE") or "").strip()
            or DEFAULT_INBOUND_MESSAGE,
            rate_limit_per_minute=int(env.get("CALLBRIDGE_RATE_LIMIT_PER_MINUTE") or 600),
            webhook_retry_base_seconds=_float(env, "CALLBRIDGE_WEBHOOK_RETRY_BASE_SECONDS", 10.0),
            webhook_retry_max_seconds=_float(env, "CALLBRIDGE_WEBHOOK_RETRY_MAX_SECONDS", 3600.0),
            webhook_retry_window_hours=_float(env, "CALLBRIDGE_WEBHOOK_RETRY_WINDOW_HOURS", 24.0),
            webhook_poll_seconds=_float(env, "CALLBRIDGE_WEBHOOK_POLL_SECONDS", 2.0),
            webhook_timeout_seconds=_float(env, "CALLBRIDGE_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            webhook_allow_private_targets=_bool(
                env, "CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE_TARGETS", False
            ),
            sandbox_memory_records=_at_least_one(env, "CALLBRIDGE_SANDBOX_MEMORY_RECORDS", 2000),
            sandbox_journal_entries=_at_least_one(env, "CALLBRIDGE_SANDBOX_JOURNAL_ENTRIES", 5000),
            retention_days=_retention_days(env),
        )

    @property
    def engine_options(self) -> dict[str, int]:
        """Connection pool options for make_engine (SQLite keeps its single connection)."""
        if self.db_pool_size is None or self.database_url.startswith("sqlite"):
            return {}
        return {"pool_size": self.db_pool_size, "max_overflow": 0}

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def from_number(self) -> str | None:
        """Caller id for campaigns that name none; the sandbox accepts any."""
        return self.default_from_number or (SANDBOX_FROM_NUMBER if self.sandbox else None)

    @property
    def sandbox(self) -> bool:
        return self.telephony == "sandbox"

    @property
    def exposed_sandbox(self) -> bool:
        """Sandbox mode listening beyond the loopback: the public sandbox secrets would let
        anyone who can reach the port forge callbacks, so the installation's own are used, and
        the sandbox's records need an API key."""
        return self.sandbox and not is_loopback(self.host)

    @property
    def public_sandbox_secrets(self) -> list[str]:
        """Which secrets in use are the fixed, published sandbox ones."""
        public = {
            "twilio_auth_token": self.twilio_auth_token == SANDBOX_AUTH_TOKEN,
            "elevenlabs_api_key": self.agent_api_key == SANDBOX_ELEVENLABS_API_KEY,
            "elevenlabs_webhook_secret": (
                self.agent_webhook_secret == SANDBOX_ELEVENLABS_WEBHOOK_SECRET
            ),
        }
        return [name for name, fixed in public.items() if fixed]

    @property
    def base_url(self) -> str:
        """The URL Twilio reaches us at; signatures are computed over it, never over Host."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def inbound_url(self) -> str:
        """The voice URL of the numbers callbridge dials from: where call backs reach it."""
        return f"{self.base_url}{INBOUND_PATH}"

    @property
    def local_url(self) -> str:
        """Our own listening address, for in-process sandbox parts calling each other."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def agent_api_url(self) -> str:
        """Where ElevenLabs requests go: the configured URL, the sandbox agent, or the real API."""
        if self.elevenlabs_url:
            return self.elevenlabs_url.rstrip("/")
        if self.sandbox:
            return f"{self.local_url}/sandbox/elevenlabs"
        return "https://api.elevenlabs.io"

    @property
    def agent_api_key(self) -> str | None:
        if self.elevenlabs_api_key:
            return self.elevenlabs_api_key
        return SANDBOX_ELEVENLABS_API_KEY if self.sandbox else None

    @property
    def agent_webhook_secret(self) -> str | None:
        if self.elevenlabs_webhook_secret:
            return self.elevenlabs_webhook_secret
        return SANDBOX_ELEVENLABS_WEBHOOK_SECRET if self.sandbox else None
