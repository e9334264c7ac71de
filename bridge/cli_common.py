"""What every `callbridge` command shares: exit codes, `--json`, one-line errors, the API client."""

from __future__ import annotations

import functools
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click

# Exit codes a script can rely on (documented in every command's help and in the README).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ATTENTION = 3

DEFAULT_URL = "http://127.0.0.1:8080"
# A CLI request waits this long for the service; an upload of a large CSV may take longer.
REQUEST_TIMEOUT_SECONDS = 600.0

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """A failure shown as one line on stderr (`callbridge: ...`), exit status 1."""

    exit_code = EXIT_FAILURE

    def show(self, file: IO[Any] | None = None) -> None:
        # One line, whatever the message holds: scripts read the first line of stderr.
        message = " ".join(self.format_message().split())
        click.echo(f"callbridge: {message}", err=True)


class UsageFailure(Failure):
    """A user's mistake in what was asked (a bad file, a bad value), exit status 2."""

    exit_code = EXIT_USAGE


def json_option(
    help_text: str = "print one JSON document on stdout (messages go to stderr)",
) -> Any:
    return click.option("as_json", "--json", is_flag=True, help=help_text)


def emit(data: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as one JSON document, or call ``human`` to print it for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        human()


def note(message: str) -> None:
    """A message for the person at the terminal: always on stderr, never mixed with output."""
    click.echo(message, err=True)


class ApiError(Failure):
    """The service answered with an error: its code, message and HTTP status on one line."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code


class Api:
    """A small client of callbridge's REST API (stdlib HTTP: one request at a time is all a
    command needs)."""

    def __init__(self, url: str, key: str | None) -> None:
        self.url = url.rstrip("/")
        self.key = key

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | IO[bytes] | None = None,
        content_type: str | None = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        if not self.key:
            raise UsageFailure("set CALLBRIDGE_API_KEY to an API key of the service")
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        url = self.url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        sent = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            content_type = "application/json"
        if content_type:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            return urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Failure(f"cannot reach the service at {self.url} ({reason})") from None

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """One request; the answer's JSON (None for an empty answer)."""
        with self._request(method, path, **kw) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def page_all(self, path: str, query: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a paged list (`page`, `per_page`, `X-Total-Count`)."""
        items: list[Any] = []
        page = 1
        while True:
            with self._request(
                "GET", path, query={**(query or {}), "page": page, "per_page": 1000}
            ) as r:
                total = int(r.headers.get("X-Total-Count", "0"))
                batch = json.loads(r.read())
            items += batch
            if not batch or len(items) >= total:
                return items
            page += 1

    @contextmanager
    def stream(self, path: str) -> Iterator[IO[bytes]]:
        """A streamed answer (a CSV export), read as it arrives."""
        with self._request("GET", path, headers={"Accept": "*/*"}) as response:
            yield response


def _query_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    try:
        error = json.loads(exc.read())["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", exc.reason or "no message"
    if exc.code == 401:
        message += "; check CALLBRIDGE_API_KEY"
    return ApiError(exc.code, code, message)


def remote(f: F) -> F:
    """Adds `--url` (CALLBRIDGE_URL) and hands the command an ``api`` built from it and the key in
    CALLBRIDGE_API_KEY (kept out of the command line, where other users' `ps` would see it)."""

    @click.option(
        "--url",
        envvar="CALLBRIDGE_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="the service (CALLBRIDGE_URL); the key comes from CALLBRIDGE_API_KEY",
    )
    @functools.wraps(f)
    def wrapper(*args: Any, url: str, **kwargs: Any) -> Any:
        return f(*args, api=Api(url, os.environ.get("CALLBRIDGE_API_KEY")), **kwargs)

    return wrapper  # type: ignore[return-value]
