"""`callbridge keys create|list|revoke` and `callbridge export CAMPAIGN` (on the database)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bridge.cli_common import Api, json_option

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
# campaigns.api_key_store.SCOPES and DEFAULT_SCOPE, written out so that the command line starts
# without loading SQLAlchemy (tests/test_cli_campaign.py holds them equal).
SCOPES = ("read", "write", "admin")
DEFAULT_SCOPE = "write"


def _over_api(f: Any) -> Any:
    # Explicit only (no CALLBRIDGE_URL): where a key is made must never be a surprise.
    return click.option(
        "--url",
        default=None,
        help="go through this service's API (admin key in CALLBRIDGE_API_KEY), not the database",
    )(f)


def _api(url: str) -> Api:
    return Api(url, os.environ.get("CALLBRIDGE_API_KEY"))


@click.group()
def keys() -> None:
    """API keys, directly on the database (stored hashed; shown once when created).

    Working on the database makes the first key possible. With --url, the command goes through
    that service's API instead (POST/GET/DELETE /api/v1/api-keys) with the admin key in
    CALLBRIDGE_API_KEY; a key made so has at most that key's scope and rate limit.

    \b
    Example:
      export CALLBRIDGE_API_KEY=$(callbridge keys create --name ci --scope write)
    """


@keys.command("create")
@click.option("--name", required=True, help="who or what the key is for")
@click.option("--rate-limit", type=int, default=None, help="requests per minute")
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default=DEFAULT_SCOPE,
    help="read: GET only; write: also campaigns, calls, contacts, do-not-call; "
    f"admin: also keys and webhook subscriptions (default: {DEFAULT_SCOPE})",
)
@json_option("print JSON")
@_over_api
def keys_create(
    name: str, rate_limit: int | None, scope: str, as_json: bool, url: str | None
) -> None:
    """Create a key and print it (only this once).

    \b
    Example:
      callbridge keys create --name reporting --scope read --rate-limit 60
    """
    if url:
        if rate_limit is not None and rate_limit < 1:
            raise ValueError("--rate-limit must be at least 1")
        body = {"name": name, "scope": scope, "rate_limit_per_minute": rate_limit}
        made = _api(url).call("POST", "/api/v1/api-keys", body=body)
        sys.exit(_print_created(made, made["key"], as_json))
    sys.exit(_keys_create(name, rate_limit, scope, as_json))


@keys.command("list")
@json_option("print JSON")
@_over_api
def keys_list(as_json: bool, url: str | None) -> None:
    """List keys with their scopes (never the keys themselves).

    \b
    Example:
      callbridge keys list --json
    """
    if url:
        sys.exit(_print_keys(_api(url).call("GET", "/api/v1/api-keys"), as_json))
    sys.exit(_keys_list(as_json))


@keys.command("revoke")
@click.argument("key_id")
@json_option()
@_over_api
def keys_revoke(key_id: str, as_json: bool, url: str | None) -> None:
    """Revoke a key by id: it stops working at once.

    \b
    Example:
      callbridge keys revoke key_0123456789abcdef
    """
    if url:
        _api(url).call("DELETE", f"/api/v1/api-keys/{key_id}")
        print(json.dumps({"id": key_id, "revoked": True}) if as_json else f"revoked {key_id}")
        sys.exit(0)
    sys.exit(_keys_revoke(key_id, as_json))


@click.command("export")
@click.argument("campaign_id")
@json_option("print the rows as a JSON list instead of CSV")
def export(campaign_id: str, as_json: bool) -> None:
    """Write a campaign's contacts and outcomes as CSV to stdout (streamed), from the database.

    \b
    Example:
      callbridge export cmp_0123456789abcdef0123 > results.csv
    """
    sys.exit(_export(campaign_id, as_json))


@asynccontextmanager
async def _database() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    from bridge.migrate import upgrade_to_head
    from bridge.settings import Settings
    from campaigns.db import make_engine, make_sessionmaker

    engine = make_engine(Settings.from_env().database_url)
    try:
        await upgrade_to_head(engine)
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


def _run(work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _database() as sm:
            return await work(sm)

    return asyncio.run(main())


def _key_row(key: Any) -> dict[str, Any]:
    from bridge.api.api_keys import key_json

    return key_json(key)


def _keys_create(name: str, rate_limit: int | None, scope: str, as_json: bool) -> int:
    from campaigns.api_key_store import create_key

    if rate_limit is not None and rate_limit < 1:
        raise ValueError("--rate-limit must be at least 1")
    created = _run(lambda sm: create_key(sm, name, rate_limit_per_minute=rate_limit, scope=scope))
    return _print_created(_key_row(created.key), created.secret, as_json)


def _print_created(row: dict[str, Any], secret: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({**row, "key": secret}))
    else:
        print(secret)
        print(f"id {row['id']}: store the key now, it is not shown again", file=sys.stderr)
    return 0


def _keys_list(as_json: bool) -> int:
    from campaigns.api_key_store import list_keys

    return _print_keys([_key_row(k) for k in _run(list_keys)], as_json)


def _print_keys(rows: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        print(f"{row['id']}  {row['prefix']}…  {row['name']}  {row['scope']}  {state}")
    return 0


def _keys_revoke(key_id: str, as_json: bool) -> int:
    from campaigns.api_key_store import UnknownKey, revoke_key

    try:
        _run(lambda sm: revoke_key(sm, key_id))
    except UnknownKey:
        print(f"callbridge: no API key {key_id!r}", file=sys.stderr)
        return 1
    print(json.dumps({"id": key_id, "revoked": True}) if as_json else f"revoked {key_id}")
    return 0


def _export(campaign_id: str, as_json: bool) -> int:
    from bridge.api.export import stream_export
    from campaigns.lifecycle import CampaignError, get_campaign

    async def work(sm: async_sessionmaker[AsyncSession]) -> int:
        async with sm() as session:
            try:
                await get_campaign(session, campaign_id)
            except CampaignError as exc:
                print(f"callbridge: {exc}", file=sys.stderr)
                return 1
        if as_json:
            text = "".join([chunk async for chunk in stream_export(sm, campaign_id)])
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
            print(json.dumps(rows, indent=2))
            return 0
        out = sys.stdout.buffer
        async for chunk in stream_export(sm, campaign_id):
            out.write(chunk.encode("utf-8"))
        out.flush()
        return 0

    return _run(work)
