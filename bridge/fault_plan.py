"""The faults a rehearsal injects, as configured: the plan the sandbox carrier and agent draw
from (bridge/sandbox/faults.py). Settings hold it; nothing here runs.

Each fault has a probability, and the seed makes the draws repeatable. Configured with one
string, e.g. ``CALLBRIDGE_SANDBOX_FAULTS="seed=7,rate_limit=0.1,callback_drop=0.05"``.

Create faults (the REST API):
  rate_limit      answer 429 / 20429 and create nothing
  server_error    answer 500 and create nothing
  create_timeout  create the call, then hold the answer for ``hang_seconds`` (the client times out)
  slow            wait ``slow_seconds`` before handling the create (keep it under the client's
                  timeout to model a slow carrier; above it, the call is created after the client
                  gave up, which is what a real late create looks like)
Agent faults (the sandbox agent's own API):
  agent_create_timeout  the agent's outbound-call (over Twilio or a SIP trunk) places the call,
                        then holds its answer for ``hang_seconds`` (the client times out)
Callback faults (status and AMD callbacks; the TwiML request is never touched):
  callback_drop       never delivered
  callback_delay      delivered ``callback_delay_seconds`` late
  callback_duplicate  delivered twice
  callback_reorder    held back and delivered after the call's next callback
"""

from __future__ import annotations

from dataclasses import dataclass, fields

_PROBABILITIES = (
    "rate_limit",
    "server_error",
    "create_timeout",
    "slow",
    "agent_create_timeout",
    "callback_drop",
    "callback_delay",
    "callback_duplicate",
    "callback_reorder",
)


@dataclass(frozen=True)
class Faults:
    seed: int = 0
    rate_limit: float = 0.0
    server_error: float = 0.0
    create_timeout: float = 0.0
    hang_seconds: float = 15.0
    slow: float = 0.0
    slow_seconds: float = 1.0
    agent_create_timeout: float = 0.0
    callback_drop: float = 0.0
    callback_delay: float = 0.0
    callback_delay_seconds: float = 1.0
    callback_duplicate: float = 0.0
    callback_reorder: float = 0.0

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"sandbox fault {name} must be a probability in [0, 1]")
        if self.rate_limit + self.server_error + self.create_timeout > 1.0:
            raise ValueError("rate_limit + server_error + create_timeout must not exceed 1")
        for name in ("hang_seconds", "slow_seconds", "callback_delay_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"sandbox fault {name} must not be negative")

    @property
    def any(self) -> bool:
        return any(getattr(self, name) > 0 for name in _PROBABILITIES)

    @classmethod
    def parse(cls, text: str | None) -> Faults:
        """``key=value`` pairs separated by commas; unknown keys are an error, not a no-op."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, float | int] = {}
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in known:
                names = ", ".join(sorted(known))
                raise ValueError(f"unknown sandbox fault {part!r} (known: {names})")
            try:
                values[key] = int(raw) if key == "seed" else float(raw)
            except ValueError:
                raise ValueError(f"sandbox fault {key} needs a number, not {raw!r}") from None
        return cls(**values)  # type: ignore[arg-type]
