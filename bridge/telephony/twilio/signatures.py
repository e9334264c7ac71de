"""X-Twilio-Signature checks over the exact public URL Twilio requested."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)


def public_request_url(request: web.Request, base_url: str) -> str:
    # Behind a proxy the Host we see is not the one Twilio signed: rebuild from the configured
    # public base, and keep the path and query exactly as sent (re-encoding breaks signatures).
    return f"{base_url}{request.raw_path}"


def _repeated(pairs: Iterable[tuple[str, object]]) -> set[str]:
    # From the pairs: a multidict's keys() names each key once, however often it was sent.
    seen: set[str] = set()
    repeated: set[str] = set()
    for name, _ in pairs:
        (repeated if name in seen else seen).add(name)
    return repeated


def refuse_repeated_parameters(request: web.Request, form: MultiDictProxy[str]) -> None:
    """400 when the query string or the form names a parameter more than once.

    Twilio sends each parameter once. The handlers read one value per name, while the validator
    folds identical values into one, so a repeat could smuggle in a value nobody signed (or
    make a signed one ambiguous): such a request is refused whole, before anything is used.
    """
    repeated = sorted(_repeated(request.query.items()) | _repeated(form.items()))
    if not repeated:
        return
    log.warning("rejected %s: repeated parameter(s) %s", request.path, ", ".join(repeated))
    names = ", ".join(repeated)
    raise web.HTTPBadRequest(
        text=json.dumps(
            {
                "error": {
                    "code": "repeated_parameter",
                    "message": f"parameter {names} appears more than once; each may appear once",
                    "details": {"parameters": repeated},
                }
            }
        ),
        content_type="application/json",
    )


async def verified_form(
    request: web.Request, validator: RequestValidator, base_url: str
) -> MultiDictProxy[str]:
    """The POSTed form, or 400 when it repeats a parameter, or 403 when its signature is
    missing or wrong. Nothing is used before."""
    posted = await request.post()
    form = MultiDictProxy(MultiDict((key, str(value)) for key, value in posted.items()))
    refuse_repeated_parameters(request, form)
    signature = request.headers.get("X-Twilio-Signature", "")
    # The validator reads every value of a multidict (getall), and compares in constant time.
    if not signature or not validator.validate(
        public_request_url(request, base_url), form, signature
    ):
        log.warning("rejected %s: bad or missing X-Twilio-Signature", request.path)
        raise web.HTTPForbidden(
            text='{"error": {"code": "bad_signature", "message": "invalid X-Twilio-Signature"}}',
            content_type="application/json",
        )
    return form
