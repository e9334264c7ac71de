"""One JSON error shape for every 4xx: {"error": {"code", "message", "details"}}.

The ElevenLabs-compatible routes (``/v1/convai/``) answer in ElevenLabs' own shape instead, so
code written for ElevenLabs (and its SDK's exception body) reads our errors as it reads theirs:
``{"detail": [{"loc", "msg", "type"}, ...]}`` for a 422 (FastAPI's HTTPValidationError, as
ElevenLabs' OpenAPI declares it) and ``{"detail": {"status", "message"}}`` for any other. There a
request that is malformed (a body that is not JSON, a query parameter of the wrong type, an
invalid setting) is a 422, as FastAPI answers it, where callbridge's own routes say 400.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from campaigns.intake.errors import ImportRefused
from campaigns.lifecycle import CampaignError

log = logging.getLogger(__name__)


ELEVENLABS_PREFIX = "/v1/convai/"
# Refusals of the request itself: 400 on callbridge's routes, a validation error (422) on
# ElevenLabs', whose OpenAPI declares 422 and no 400 for every operation.
MALFORMED = frozenset({"bad_json", "bad_query", "invalid"})


def error_response(
    status: int, code: str, message: str, details: Any = None, *, path: str = ""
) -> web.Response:
    """The error answer for a request to ``path`` (ElevenLabs' shape under /v1/convai/)."""
    if path.startswith(ELEVENLABS_PREFIX):
        if status == 400 and code in MALFORMED:
            status = 422
        return web.json_response(elevenlabs_error(status, code, message, details), status=status)
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response({"error": body}, status=status)


def elevenlabs_error(status: int, code: str, message: str, details: Any = None) -> dict[str, Any]:
    if status != 422:
        detail: dict[str, Any] = {"status": code, "message": message}
        if details is not None:
            detail["details"] = details
        return {"detail": detail}
    items = details if isinstance(details, list) and details else [details]
    return {"detail": [_validation_item(code, message, item) for item in items]}


def _validation_item(code: str, message: str, item: Any) -> dict[str, Any]:
    """One entry of a 422's detail list: where (loc), what (msg) and its kind (type)."""
    if not isinstance(item, dict):
        return {"loc": ["body"], "msg": message, "type": code}
    if "query" in item:
        # A query parameter, as FastAPI places it.
        return {"loc": ["query", item["query"]], "msg": message, "type": code}
    extra = {k: v for k, v in item.items() if k not in ("field", "message", "recipient")}
    if "recipient" in item:
        # A refused batch recipient: its position, and why (with the number's type if known).
        loc: list[Any] = ["body", "recipients", item["recipient"], "phone_number"]
        entry = {"loc": loc, "msg": str(item.get("reason") or message), "type": code}
        return {**entry, "recipient": item["recipient"], **extra}
    if "field" in item:
        parts = [int(p) if p.isdigit() else p for p in str(item["field"] or "").split(".") if p]
        return {"loc": ["body", *parts], "msg": str(item.get("message") or message), "type": code}
    return {"loc": ["body"], "msg": message, "type": code, "ctx": item}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


# The domain's error kinds as HTTP statuses; input-specific codes (invalid_policy, ...) are 422.
_CAMPAIGN_ERROR_STATUS = {
    "invalid": 400,
    "not_found": 404,
    "conflict": 409,
    "dnc": 422,
    "idempotency_key_reused": 422,
}


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, path=request.path)
    except CampaignError as exc:
        status = _CAMPAIGN_ERROR_STATUS.get(
            exc.code, 422 if exc.code.startswith("invalid_") else 400
        )
        return error_response(status, exc.code, str(exc), exc.details, path=request.path)
    except ImportRefused as exc:
        return error_response(422, "csv_refused", str(exc), path=request.path)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        # A 413 from aiohttp says the limit in its text; other reasons are enough on their own.
        message = exc.text if exc.status == 413 and exc.text else exc.reason
        return error_response(exc.status, _code_for(exc.status), message, path=request.path)


def _code_for(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        # aiohttp's own refusal of a form past client_max_size: the same code as bodies.py's.
        413: "body_too_large",
        422: "unprocessable",
        429: "rate_limited",
    }.get(status, "error")
