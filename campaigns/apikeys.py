"""API keys: created with 256 random bits, stored as SHA-256 only, revoked by id.

A fast hash is enough here: the keys are random, not passwords, so there is nothing to guess
from the hash, and every request can afford to compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.api_tables import ApiKey
from campaigns.clock import utcnow
from campaigns.ids import new_id

KEY_PREFIX = "cb_"
SHOWN_PREFIX_CHARS = 10
# last_used_at is written at most this often per key, so busy keys do not write on every request.
LAST_USED_GRANULARITY_SECONDS = 60


class UnknownKey(LookupError):
    """No such key."""


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # shown once, never stored


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


async def create_key(
    sm: async_sessionmaker[AsyncSession], name: str, *, rate_limit_per_minute: int | None = None
) -> CreatedKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        name=name.strip() or "unnamed",
        prefix=secret[:SHOWN_PREFIX_CHARS],
        key_hash=hash_key(secret),
        rate_limit_per_minute=rate_limit_per_minute,
        created_at=utcnow(),
    )
    async with sm.begin() as session:
        session.add(key)
    return CreatedKey(key, secret)


async def list_keys(sm: async_sessionmaker[AsyncSession]) -> Sequence[ApiKey]:
    async with sm() as session:
        return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


async def revoke_key(sm: async_sessionmaker[AsyncSession], key_id: str) -> ApiKey:
    async with sm.begin() as session:
        key = await session.get(ApiKey, key_id)
        if key is None:
            raise UnknownKey(key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return key


async def find_key(sm: async_sessionmaker[AsyncSession], presented: str) -> ApiKey | None:
    """The live key whose hash matches ``presented``, or None."""
    digest = hash_key(presented)
    async with sm() as session:
        key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        if key is None or key.revoked_at is not None:
            return None
        # The index found the row; compare the full digest in constant time all the same.
        if not hmac.compare_digest(key.key_hash, digest):
            return None
        now = utcnow()
        if (
            key.last_used_at is None
            or (now - key.last_used_at).total_seconds() > LAST_USED_GRANULARITY_SECONDS
        ):
            await session.execute(
                update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
            )
            await session.commit()
            key.last_used_at = now
        return key
