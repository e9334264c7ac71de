"""Log output: readable text by default, one JSON object per line on request.

Either way every line goes through the same redaction: phone numbers are masked the way the
rest of the code masks them, and the configured secrets never appear, whatever a library or an
exception message put in the line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from pythonjsonlogger.json import JsonFormatter

from campaigns.phones import mask

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# E.164 as written anywhere in a line (also URL-encoded, %2B), not already masked.
_PHONE = re.compile(r"(?:\+|%2B)(\d{8,15})\b")
# Shorter values could be ordinary words; real secrets are longer than this.
MIN_SECRET_LENGTH = 8


class Redactor:
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted(
            {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def __call__(self, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, "[redacted]")
        return _PHONE.sub(lambda m: mask("+" + m.group(1)), line)


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then redacts the finished line (message, arguments, traceback)."""

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self._inner = inner
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._inner.format(record))


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
