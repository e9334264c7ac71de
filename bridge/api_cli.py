"""`callbridge keys create|list|revoke` and `callbridge export CAMPAIGN`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.apikeys import DEFAULT_SCOPE, SCOPES

T = TypeVar("T")


def add_api_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="API keys (stored hashed; shown once when created)")
    key_commands = keys.add_subparsers(title="keys commands")
    create = key_commands.add_parser("create", help="create a key and print it (only this once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--rate-limit", type=int, default=None, help="requests per minute")
    create.add_argument(
        "--scope",
        choices=SCOPES,
        default=DEFAULT_SCOPE,
        help="read: GET only; write: also campaigns, calls, contacts, do-not-call; "
        f"admin: also keys and webhook subscriptions (default: {DEFAULT_SCOPE})",
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(handler=_keys_create)
    listing = key_commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key by id: it stops working at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_keys_revoke)

    export = commands.add_parser(
        "export", help="write a campaign's contacts and outcomes as CSV to stdout (streamed)"
    )
    export.add_argument("campaign_id")
    export.set_defaults(handler=_export)


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


def _keys_create(args: argparse.Namespace) -> int:
    from campaigns.apikeys import create_key

    if args.rate_limit is not None and args.rate_limit < 1:
        raise ValueError("--rate-limit must be at least 1")
    created = _run(
        lambda sm: create_key(
            sm, args.name, rate_limit_per_minute=args.rate_limit, scope=args.scope
        )
    )
    if args.json:
        print(json.dumps({**_key_row(created.key), "key": created.secret}))
    else:
        print(created.secret)
        print(f"id {created.key.id}: store the key now, it is not shown again", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from campaigns.apikeys import list_keys

    rows = [_key_row(k) for k in _run(list_keys)]
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        print(f"{row['id']}  {row['prefix']}…  {row['name']}  {row['scope']}  {state}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from campaigns.apikeys import UnknownKey, revoke_key

    try:
        _run(lambda sm: revoke_key(sm, args.key_id))
    except UnknownKey:
        print(f"callbridge: no API key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from bridge.api.export import stream_export
    from campaigns.lifecycle import CampaignError, get_campaign

    async def work(sm: async_sessionmaker[AsyncSession]) -> int:
        async with sm() as session:
            try:
                await get_campaign(session, args.campaign_id)
            except CampaignError as exc:
                print(f"callbridge: {exc}", file=sys.stderr)
                return 1
        out = sys.stdout.buffer
        async for chunk in stream_export(sm, args.campaign_id):
            out.write(chunk.encode("utf-8"))
        out.flush()
        return 0

    return _run(work)
