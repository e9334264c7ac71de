"""Log output: readable text by default, one JSON object per line on request.

Either way every record goes through the same redaction (`bridge.ops.redaction`) before it is
formatted: its message, arguments, traceback, stack and extra fields have phone numbers masked and
credentials removed, whatever a library or an exception message put in them. The record's time,
level and logger name are left as they are (a timestamp is not a phone number). Finally the
configured secrets are removed from the finished line by value.

The access log (`RedactingAccessLogger`) masks what a client controls (the request line with its
path and query string, the Referer and User-Agent headers); the parts the server writes (status,
size, client address) are left readable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiohttp.abc import BaseRequest, StreamResponse
from aiohttp.web_log import AccessLogger
from pythonjsonlogger.json import JsonFormatter

from bridge.ops.redaction import Redactor, mask_numbers, redact_credentials

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Set on access log records whose client-controlled parts are already masked.
_PRE_MASKED = "callbridge_pre_masked"
# Every attribute a plain LogRecord has: anything else on a record is an extra field.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class RedactingFormatter(logging.Formatter):
    """Redacts a copy of each record, formats it with ``inner``, then removes secrets by value."""

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self._inner = inner
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        clean = logging.makeLogRecord(dict(vars(record)))
        pre_masked = bool(vars(clean).pop(_PRE_MASKED, False))

        # An access log record had its client-controlled parts masked already; the rest is the
        # server's own (status, size, address), which holds no number or credential.
        redact = self._redact.secrets if pre_masked else self._redact

        if isinstance(record.msg, dict):
            clean.msg = _redacted_value(record.msg, redact)
        else:
            clean.msg = redact(record.getMessage())
        clean.args = None
        if record.exc_info:
            clean.exc_text = redact(self._inner.formatException(record.exc_info))
        elif record.exc_text:
            clean.exc_text = redact(record.exc_text)
        # The redacted text above stands for the exception from here on.
        clean.exc_info = None
        if record.stack_info:
            clean.stack_info = redact(record.stack_info)
        for name, value in list(vars(clean).items()):
            if name not in _STANDARD_ATTRIBUTES:
                setattr(clean, name, _redacted_value(value, redact))
        return self._redact.secrets(self._inner.format(clean))


def _redacted_value(value: Any, redact: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted_value(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted_value(item, redact) for item in value]
    return value


class _PreMaskedAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), _PRE_MASKED: True}
        return msg, kwargs


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access log with the client-controlled parts masked: paths and query strings
    carry numbers (a contact search) and sometimes credentials (``?token=``)."""

    def __init__(self, logger: logging.Logger, log_format: str = AccessLogger.LOG_FORMAT) -> None:
        super().__init__(_PreMaskedAdapter(logger), log_format)  # type: ignore[arg-type]

    def _format_line(
        self, request: BaseRequest, response: StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        return [
            (key, _mask_client_part(value) if _client_controlled(key) else value)
            for key, value in super()._format_line(request, response, time)
        ]


def _client_controlled(key: str | tuple[str, str]) -> bool:
    return key == "first_request_line" or (isinstance(key, tuple) and key[0] == "request_header")


def _mask_client_part(value: Any) -> Any:
    return mask_numbers(redact_credentials(value)) if isinstance(value, str) else value


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )


def configure(
    log_format: str = "text",
    secrets: Iterable[str | None] = (),
    level: int = logging.INFO,
) -> None:
    inner = json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(inner, Redactor(secrets)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The SDK logs request bodies (phone numbers) at INFO.
    logging.getLogger("twilio").setLevel(logging.WARNING)
