"""Faults the sandbox carrier can inject, to rehearse what a real carrier and network do.

Each fault has a probability; draws come from seeded generators, so a run with the same seed and
the same order of requests makes the same choices. Configured with one string, e.g.
``CALLBRIDGE_SANDBOX_FAULTS="seed=7,rate_limit=0.1,server_error=0.05,callback_drop=0.05"``.

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

import random
from dataclasses import dataclass, fields
from enum import Enum

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


class CreateFault(Enum):
    NONE = "none"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    CREATE_TIMEOUT = "create_timeout"


@dataclass(frozen=True)
class CallbackFate:
    drop: bool = False
    delay: float = 0.0
    duplicate: bool = False
    reorder: bool = False


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


class FaultInjector:
    """Draws fault decisions from the configured probabilities."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        # Separate streams, so the number of callbacks does not shift the create decisions.
        self._creates = random.Random(faults.seed)
        self._callbacks = random.Random(faults.seed + 1)
        self._agent_creates = random.Random(faults.seed + 2)

    def create_fault(self) -> CreateFault:
        f = self.faults
        draw = self._creates.random()
        for fault, probability in (
            (CreateFault.RATE_LIMIT, f.rate_limit),
            (CreateFault.SERVER_ERROR, f.server_error),
            (CreateFault.CREATE_TIMEOUT, f.create_timeout),
        ):
            if draw < probability:
                return fault
            draw -= probability
        return CreateFault.NONE

    def agent_create_timeout(self) -> bool:
        """Whether the agent's outbound-call holds its answer after placing the call."""
        chance = self.faults.agent_create_timeout
        return bool(chance) and self._agent_creates.random() < chance

    def create_delay(self) -> float:
        if self.faults.slow and self._creates.random() < self.faults.slow:
            return self.faults.slow_seconds
        return 0.0

    def callback_fate(self) -> CallbackFate:
        f = self.faults
        if not (f.callback_drop or f.callback_delay or f.callback_duplicate or f.callback_reorder):
            return CallbackFate()
        rng = self._callbacks
        if rng.random() < f.callback_drop:
            return CallbackFate(drop=True)
        return CallbackFate(
            delay=f.callback_delay_seconds if rng.random() < f.callback_delay else 0.0,
            duplicate=rng.random() < f.callback_duplicate,
            reorder=rng.random() < f.callback_reorder,
        )
