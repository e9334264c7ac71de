"""Request bodies: read whole, streamed, under a limit; JSON parsed without surprises.

Every handler that reads a body reads it through ``body_chunks``: to its very end (never only
what happens to be buffered, which a slow client's upload cuts anywhere), and one larger than the
route's limit is refused whole with 413 ``body_too_large`` before anything is stored. Form bodies
parsed by aiohttp (``request.post()``: Twilio callbacks, the sandbox carrier) follow the same rule
through the application's ``client_max_size`` (FORM_LIMIT_BYTES); the error middleware answers
that refusal with the same 413.

``parse_json`` turns bytes into a JSON value or a clear 400: besides malformed text it refuses
what the json module accepts but nothing downstream can hold (nesting that exhausts recursion,
integers of thousands of digits or beyond 64 bits, NaN and infinities, lone UTF-16 surrogates
that no database encodes), so every route that takes JSON is safe from them at once.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import IO, Any

from aiohttp import web

from bridge.api.errors import ApiError

# JSON requests: room for the largest documented body (10,000 contacts or recipients, each with
# a few dynamic variables) with a wide margin.
JSON_LIMIT_BYTES = 8 * 1024**2
# URL-encoded forms (Twilio callbacks, sandbox requests): a few hundred bytes in practice.
FORM_LIMIT_BYTES = 1024**2
BODY_TOO_LARGE = "body_too_large"

# Deeper than any body we document (dynamic variables are flat), shallow enough that checking,
# validating and storing the value never recurses near Python's limit.
MAX_JSON_DEPTH = 32
# Integers are stored in 64-bit columns; longer digit strings are not even converted.
_MAX_INT = 2**63 - 1
_MAX_INT_CHARS = len(str(-(2**63)))
# Spooled uploads are written in pieces of about this size, whatever sizes the client sends.
_SPOOL_WRITE_BYTES = 256 * 1024


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        BODY_TOO_LARGE,
        f"the request body is larger than this route accepts ({_size(limit)})",
        {"limit_bytes": limit},
    )


def _size(limit: int) -> str:
    if limit % 1024**2 == 0:
        return f"{limit // 1024**2} MiB"
    return f"{limit} bytes"


async def body_chunks(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    """The body's bytes, to the end, in the pieces they arrive in; 413 once past ``limit``.

    A declared Content-Length over the limit is refused before a byte is read.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        yield chunk


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body in memory: for small bodies (JSON, signed webhooks)."""
    body = bytearray()
    async for chunk in body_chunks(request, limit):
        body += chunk
    return bytes(body)


async def spool_body(request: web.Request, spool: IO[bytes], limit: int) -> int:
    """Write the whole body to ``spool`` (a file, written in a thread); returns its size."""
    pending = bytearray()
    size = 0
    async for chunk in body_chunks(request, limit):
        pending += chunk
        size += len(chunk)
        if len(pending) >= _SPOOL_WRITE_BYTES:
            await asyncio.to_thread(spool.write, bytes(pending))
            pending.clear()
    if pending:
        await asyncio.to_thread(spool.write, bytes(pending))
    return size


async def read_json(request: web.Request, limit: int = JSON_LIMIT_BYTES) -> Any:
    return parse_json(await read_body(request, limit))


class BadJson(ValueError):
    """The body is not a JSON value we accept; the message says why, for the user."""


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw`` (UTF-8), or ApiError 400 ``bad_json`` saying what is wrong."""
    try:
        return loads(raw)
    except BadJson as exc:
        raise ApiError(400, "bad_json", str(exc)) from exc


def loads(raw: bytes | str) -> Any:
    """json.loads, refusing with BadJson what cannot be stored or checked safely."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except BadJson:
        raise
    except RecursionError as exc:
        raise BadJson(f"request body is nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except UnicodeDecodeError as exc:
        raise BadJson("request body is not UTF-8 text") from exc
    except ValueError as exc:  # json.JSONDecodeError among them
        raise BadJson(f"request body is not valid JSON: {exc}") from exc
    _check_tree(value)
    return value


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_CHARS:
        raise BadJson(f"an integer of {len(text)} digits is too large (at most 64 bits)")
    value = int(text)
    if not -_MAX_INT - 1 <= value <= _MAX_INT:
        raise BadJson(f"integer {text} is too large (at most 64 bits)")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJson(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON number")


def _check_tree(value: Any) -> None:
    """Depth and text of every node, without recursion (the value may be deep)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_text(node)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_JSON_DEPTH:
            raise BadJson(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            for key, item in node.items():
                _check_text(key)
                stack.append((item, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in node)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # "\ud800" is valid JSON but no Unicode text: no database (nor UTF-8) can store it.
        raise BadJson(
            "request body contains an unpaired UTF-16 surrogate (\\ud800-\\udfff escape)"
        ) from exc
