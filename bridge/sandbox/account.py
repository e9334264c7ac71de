"""The sandbox account as Twilio's API shows it: the Account, and the numbers it owns.

A preflight (`callbridge check`) reads both: the Account answers only to the account's own SID and
auth token, and IncomingPhoneNumbers says whether a caller id belongs to the account. The sandbox
account owns every valid number but one, ``wire.UNVERIFIED_FROM``, the number whose calls it
refuses with 21210 (not verified on the account), as a number bought elsewhere would be. Each
number's voice URL (where Twilio sends the calls it receives) is the carrier's, except for
``wire.UNCONFIGURED_NUMBER``, still on Twilio's demo URL as a newly bought number is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import phonenumbers
from aiohttp import web

from bridge.sandbox import wire

# Shown when the numbers are listed without a filter: the sandbox's own caller id.
DEFAULT_NUMBER = "+15005550006"
# Fixed, so that the resources read the same on every run.
_CREATED = datetime(2026, 1, 1, tzinfo=UTC)

Authenticate = Callable[[web.Request], Awaitable[str]]
# The voice URL of one of the account's numbers (None: not set).
VoiceUrl = Callable[[str], str | None]


def add_routes(app: web.Application, authenticate: Authenticate, voice_url: VoiceUrl) -> None:
    account = f"/{wire.API_VERSION}/Accounts/{{account_sid}}"

    async def fetch_account(request: web.Request) -> web.Response:
        account_sid = await _own_account(request, authenticate)
        return web.json_response(account_resource(account_sid))

    async def list_numbers(request: web.Request) -> web.Response:
        account_sid = await _own_account(request, authenticate)
        wanted = request.query.get("PhoneNumber")
        if wanted is None:
            numbers = [DEFAULT_NUMBER]
        else:
            owned = owned_number(wanted)
            numbers = [owned] if owned else []
        return web.json_response(
            numbers_page(account_sid, numbers, request.query_string, voice_url)
        )

    app.router.add_get(f"{account}.json", fetch_account)
    app.router.add_get(f"{account}/IncomingPhoneNumbers.json", list_numbers)


async def _own_account(request: web.Request, authenticate: Authenticate) -> str:
    account_sid = await authenticate(request)
    if request.match_info["account_sid"] != account_sid:
        # Another account's resources: Twilio answers as if they did not exist.
        raise wire.not_found(request.path)
    return account_sid


def owned_number(number: str) -> str | None:
    """The number in E.164 when the sandbox account owns it, else None."""
    try:
        parsed = phonenumbers.parse(number, "US")
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if e164 == wire.UNVERIFIED_FROM or not phonenumbers.is_possible_number(parsed):
        return None
    return e164


def account_resource(account_sid: str) -> dict[str, Any]:
    uri = f"/{wire.API_VERSION}/Accounts/{account_sid}"
    return {
        "sid": account_sid,
        "owner_account_sid": account_sid,
        "friendly_name": "callbridge sandbox",
        "status": "active",
        "type": "Full",
        # Twilio echoes the token here; the sandbox does not hand secrets back.
        "auth_token": None,
        "date_created": wire.rfc2822(_CREATED),
        "date_updated": wire.rfc2822(_CREATED),
        "uri": f"{uri}.json",
        "subresource_uris": {
            "calls": f"{uri}/Calls.json",
            "incoming_phone_numbers": f"{uri}/IncomingPhoneNumbers.json",
        },
    }


def number_resource(account_sid: str, number: str, voice_url: str | None = None) -> dict[str, Any]:
    sid = "PN" + hashlib.sha256(f"{account_sid}:{number}".encode()).hexdigest()[:32]
    return {
        "sid": sid,
        "account_sid": account_sid,
        "phone_number": number,
        "friendly_name": wire.display_number(number),
        "capabilities": {"voice": True, "sms": True, "mms": False, "fax": False},
        "status": "in-use",
        "origin": "twilio",
        "api_version": wire.API_VERSION,
        "voice_method": "POST",
        "voice_url": voice_url,
        "date_created": wire.rfc2822(_CREATED),
        "date_updated": wire.rfc2822(_CREATED),
        "uri": f"/{wire.API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json",
    }


def numbers_page(
    account_sid: str, numbers: list[str], query: str, voice_url: VoiceUrl
) -> dict[str, Any]:
    path = f"/{wire.API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers.json"
    first = f"{path}?{query}" if query else f"{path}?{urlencode({'PageSize': 50, 'Page': 0})}"
    return {
        "incoming_phone_numbers": [number_resource(account_sid, n, voice_url(n)) for n in numbers],
        "start": 0,
        "end": max(len(numbers) - 1, 0),
        "page": 0,
        "page_size": 50,
        "first_page_uri": first,
        "next_page_uri": None,
        "previous_page_uri": None,
        "uri": first,
    }
