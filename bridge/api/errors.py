"""One JSON error shape for every 4xx: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from campaigns.importer import ImportRefused
from campaigns.lifecycle import CampaignError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response({"error": body}, status=status)


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
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except CampaignError as exc:
        status = _CAMPAIGN_ERROR_STATUS.get(
            exc.code, 422 if exc.code.startswith("invalid_") else 400
        )
        return error_response(status, exc.code, str(exc), exc.details)
    except ImportRefused as exc:
        return error_response(422, "csv_refused", str(exc))
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        # A 413 from aiohttp says the limit in its text; other reasons are enough on their own.
        message = exc.text if exc.status == 413 and exc.text else exc.reason
        return error_response(exc.status, _code_for(exc.status), message)


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
