"""Campaigns built in memory for the retry policy alone (campaigns/policy.py): no database, no
calling windows, no rule set, no caps per day."""

from __future__ import annotations

from typing import Any

from campaigns.models import Campaign


def bare_campaign(**fields: Any) -> Campaign:
    """A campaign with only what ``fields`` set beyond the policy's plain defaults."""
    values: dict[str, Any] = {
        "id": "cmp_x",
        "name": "x",
        "max_attempts": 5,
        "retry_delay_seconds": 60,
        "max_failures_per_number": 3,
        "end_after_number_failures": False,
        "timezone": "UTC",
        "calling_periods": None,
        "retry_rules": None,
        "rule_set": None,
        "max_attempts_per_day": None,
        "start_at": None,
        "end_at": None,
    }
    return Campaign(**{**values, **fields})
