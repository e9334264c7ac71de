"""X-Twilio-Signature checks over the exact public URL Twilio requested."""

from __future__ import annotations

import logging

from aiohttp import web
from multidict import MultiDictProxy
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)


def public_request_url(request: web.Request, base_url: str) -> str:
    # Behind a proxy the Host we see is not the one Twilio signed: rebuild from the configured
    # public base, and keep the path and query exactly as sent (re-encoding breaks signatures).
    return f"{base_url}{request.raw_path}"


async def verified_form(
    request: web.Request, validator: RequestValidator, base_url: str
) -> MultiDictProxy[str]:
    """The POSTed form, or 403 when its signature is missing or wrong. Nothing is read before."""
    form = await request.post()
    signature = request.headers.get("X-Twilio-Signature", "")
    params = {key: str(form[key]) for key in form}
    # validate() compares in constant time.
    if not signature or not validator.validate(
        public_request_url(request, base_url), params, signature
    ):
        log.warning("rejected %s: bad or missing X-Twilio-Signature", request.path)
        raise web.HTTPForbidden(
            text='{"error": {"code": "bad_signature", "message": "invalid X-Twilio-Signature"}}',
            content_type="application/json",
        )
    return form  # type: ignore[return-value]
