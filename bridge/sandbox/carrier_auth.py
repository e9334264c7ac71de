"""Who may use the sandbox carrier's Twilio API: HTTP Basic with the account SID and auth token,
as Twilio asks.

Run apart from the nodes, the carrier learns the installation's auth token from the database: at
start, and again when a request presents another token (the nodes may have created it after this
process started). What the carrier signs follows the token it accepts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from bridge.sandbox import wire

logger = logging.getLogger(__name__)

# The installation's stored auth token, or None while none is stored.
TokenSource = Callable[[], Awaitable[str | None]]
TOKEN_RECHECK_SECONDS = 1.0


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(login, password) of an ``Authorization: Basic`` header; None if it is not one."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, separator, password = decoded.partition(":")
    return (login, password) if separator else None


class AccountAuth:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        installation_token: TokenSource | None = None,
        on_new_token: Callable[[str], None] | None = None,
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._installation_token = installation_token
        # Told of a token adopted from the installation (to sign with it from then on).
        self._on_new_token = on_new_token
        self._token_checked_at = -math.inf

    @property
    def auth_token(self) -> str:
        """The auth token the carrier accepts and signs with now."""
        return self._auth_token

    @property
    def follows_installation(self) -> bool:
        return self._installation_token is not None

    async def authenticate(self, request: web.Request) -> str:
        """The AccountSid of a request with valid HTTP Basic credentials for its own account."""
        credentials = basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
        if credentials is None:
            raise wire.authentication_error()
        login, password = credentials
        if self._credentials_match(request, login, password):
            return login
        if await self.refresh_token() and self._credentials_match(request, login, password):
            return login
        raise wire.authentication_error()

    def _credentials_match(self, request: web.Request, login: str, password: str) -> bool:
        # Both comparisons run every time, so timing says nothing about which one failed.
        sid_ok = hmac.compare_digest(login.encode(), self._account_sid.encode())
        token_ok = hmac.compare_digest(password.encode(), self._auth_token.encode())
        return sid_ok and token_ok and request.match_info["account_sid"] == login

    async def refresh_token(self, *, force: bool = False) -> bool:
        """Adopt the installation's stored auth token if it changed; True if it did. Asked at
        most once a second, so bad credentials cannot make the carrier hammer the database."""
        if self._installation_token is None:
            return False
        now = asyncio.get_running_loop().time()
        if not force and now - self._token_checked_at < TOKEN_RECHECK_SECONDS:
            return False
        self._token_checked_at = now
        token = await self._installation_token()
        if not token or token == self._auth_token:
            return False
        self._auth_token = token
        if self._on_new_token is not None:
            self._on_new_token(token)
        logger.info("sandbox carrier now uses the installation's auth token")
        return True
