"""An outbound campaign's policy: what a submit or the workspace configuration may say, the
campaign settings and follow-up settings it becomes, and the policy as a campaign shows it."""

from __future__ import annotations

import itertools
import time
from typing import Any

from bridge.api.elevenlabs_shared import MACHINE_DETECTION_MODES, e164_or_none
from bridge.api.errors import ApiError
from bridge.api.outbound_schemas import FOLLOW_UP_ITEMS
from campaigns import followups
from campaigns.clock import BadInstant, from_unix
from campaigns.lifecycle import CampaignSpec
from campaigns.models import (
    Campaign,
    FollowUpSettings,
)

# The defaults a policy takes for what it leaves out.
DEFAULT_RETRY = {"retry_delay_seconds": 300, "max_total_calls": 3}


def refuse(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_policy", f"{field}: {message}", [{"field": field}])


def not_supported(field: str) -> ApiError:
    return ApiError(
        422,
        "not_supported",
        f"{field} is not supported yet by callbridge; leave it out",
        [{"field": field, "message": f"{field} is not supported yet"}],
    )


def check_policy(policy: dict[str, Any], where: str) -> None:
    """Refuse a rotation with no step, and overlapping intervals."""
    retry = policy.get("retry") or {}
    if retry.get("interval_placement") == "rotate" and retry.get("rotate_step_seconds") is None:
        raise refuse(f"{where}.retry.rotate_step_seconds", "required by interval_placement rotate")
    by_day: dict[int, list[tuple[str, str]]] = {}
    for index, period in enumerate(policy.get("calling_periods") or []):
        if not period["intervals"]:
            raise refuse(f"{where}.calling_periods.{index}.intervals", "must not be empty")
        for day in period["weekdays"]:
            by_day.setdefault(day, []).extend((i["start"], i["end"]) for i in period["intervals"])
    for day, intervals in by_day.items():
        ordered = sorted(intervals)
        for (_, end), (start, _) in itertools.pairwise(ordered):
            if start < end:
                raise refuse(f"{where}.calling_periods", f"intervals overlap on weekday {day}")


def effective_policy(body: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    """The policy the campaign takes: its own, else the workspace's with the agent's sections."""
    if body.get("variant") == "simple":
        if body.get("policy") is not None:
            raise refuse("policy", "a simple campaign cannot have a policy")
        return {"retry": {"max_total_calls": 1}}
    if body.get("policy") is not None:
        check_policy(body["policy"], "policy")
        return dict(body["policy"])
    if config is None:
        raise refuse("policy", "no policy given and no workspace configuration to take it from")
    policy = dict(config.get("policy") or {})
    override = (config.get("agent_policies") or {}).get(body["agent_id"]) or {}
    policy.update({k: v for k, v in override.items() if v is not None})
    return policy


def _periods(policy: dict[str, Any]) -> list[dict[str, Any]] | None:
    """ElevenLabs' periods ({weekdays, intervals}) as callbridge's ({weekdays, start, end})."""
    periods = policy.get("calling_periods")
    if not periods:
        return None
    return [
        {"weekdays": list(p["weekdays"]), "start": i["start"], "end": i["end"]}
        for p in periods
        for i in p["intervals"]
    ]


def policy_spec(body: dict[str, Any], policy: dict[str, Any]) -> CampaignSpec:
    retry = {
        **DEFAULT_RETRY,
        **{k: v for k, v in (policy.get("retry") or {}).items() if v is not None},
    }
    values: dict[str, Any] = {
        "name": body["call_name"].strip() or "campaign",
        "agent_id": body["agent_id"],
        "max_attempts": retry["max_total_calls"],
        "retry_delay_seconds": retry["retry_delay_seconds"],
        "calling_periods": _periods(policy),
        "timezone": body.get("timezone") or policy.get("timezone") or "UTC",
        "from_number": e164_or_none(body["channel_config"].get("agent_phone_number_id")),
    }
    for name in ("max_short_retries", "interval_placement", "rotate_step_seconds"):
        values[name] = retry.get(name)
    failures = (policy.get("retry") or {}).get("max_consecutive_failures_per_number")
    if failures:
        values["max_failures_per_number"] = failures
        values["end_after_number_failures"] = True
    else:
        # Unset leaves only max_total_calls: a number is never given up on before it.
        values["max_failures_per_number"] = retry["max_total_calls"]
    if body.get("target_concurrency_limit"):
        values["concurrency"] = min(body["target_concurrency_limit"], 10_000)
    mode = body["channel_config"].get("mode_config") or {}
    if mode.get("ringing_timeout_secs"):
        values["ring_timeout_seconds"] = mode["ringing_timeout_secs"]
    detection = (mode.get("twilio_machine_detection") or {}).get("mode")
    values["machine_detection"] = MACHINE_DETECTION_MODES.get(detection or "", "")
    scheduled = body.get("scheduled_time_unix")
    if scheduled and scheduled > time.time():
        try:
            values["start_at"] = from_unix(scheduled)
        except BadInstant as exc:
            raise refuse("scheduled_time_unix", str(exc)) from exc
    return CampaignSpec(**values)


def follow_up_settings(policy: dict[str, Any], campaign_id: str) -> FollowUpSettings:
    """The domain's follow-up settings for a campaign created with ``policy``."""
    retry = policy.get("retry") or {}
    collection = policy.get("data_collection") or {}
    context = policy.get("followup_context") or {}
    # Left out: the item of that name; null: not read.
    items = {name: collection.get(name, name) for name in FOLLOW_UP_ITEMS}
    return FollowUpSettings(
        campaign_id=campaign_id,
        max_callbacks=retry.get("max_callbacks"),
        max_redirects=retry.get("max_redirects"),
        callback_item=items["callback_time"],
        redirect_item=items["redirect_phone_number"],
        stop_item=items["stop"],
        mappings=dict(collection.get("mappings") or {}),
        context=[name for name in followups.CONTEXT if context.get(name)],
    )


def snapshot(policy: dict[str, Any], campaign: Campaign) -> dict[str, Any]:
    retry = {
        **DEFAULT_RETRY,
        **{k: v for k, v in (policy.get("retry") or {}).items() if v is not None},
    }
    settings = follow_up_settings(policy, campaign.id)
    return {
        "timezone": campaign.timezone,
        "retry": retry,
        "calling_periods": policy.get("calling_periods") or [],
        "data_collection": {
            "callback_time": settings.callback_item,
            "redirect_phone_number": settings.redirect_item,
            "stop": settings.stop_item,
            "mappings": settings.mappings,
        },
        "followup_context": {name: name in settings.context for name in followups.CONTEXT},
    }
