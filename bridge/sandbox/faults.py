"""The sandbox's fault injection: draws, from seeded generators, what the configured plan
(bridge/fault_plan.py) says may go wrong with a create, an agent's create or a callback. A run with
the same seed and the same order of requests makes the same choices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from bridge.fault_plan import Faults


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
