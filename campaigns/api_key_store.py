"""API keys: created with 256 random bits, stored as SHA-256 only, revoked by id.

A fast hash is enough here: the keys are random, not passwords, so there is nothing to guess
from the hash, and every request can afford to compute it.

Each key has a scope, and scopes nest: ``admin`` (keys, webhook subscriptions, settings) includes
``write`` (campaigns, calls, contacts, do-not-call), which includes ``read`` (looking only). A key
that makes another key can never give it more than it holds itself: neither a higher scope nor a
higher rate limit, so a limited key cannot mint its way out of its limits.
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

# From the least to the most a key may do; each scope includes the ones before it.
SCOPES: tuple[str, ...] = ("read", "write", "admin")
READ, WRITE, ADMIN = SCOPES
# A key made without a scope may work with campaigns and calls but not manage keys or webhooks:
# handing out admin rights must be a deliberate choice.
DEFAULT_SCOPE = WRITE


def scope_includes(held: str, required: str) -> bool:
    """Whether a key of scope ``held`` may do what needs ``required``."""
    # A scope this version does not know (a row edited by hand) grants nothing.
    return held in SCOPES and SCOPES.index(held) >= SCOPES.index(required)


class UnknownKey(LookupError):
    """No such key."""


class GrantRefused(PermissionError):
    """A key asked to create a key with more than it holds itself."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Rights:
    """What a key may do: its scope and its rate limit (None: the service default, given here
    so that the two can be compared)."""

    scope: str
    rate_limit_per_minute: int | None
    default_rate_limit_per_minute: int

    @property
    def effective_rate_limit(self) -> int:
        return self.rate_limit_per_minute or self.default_rate_limit_per_minute


def granted(
    creator: Rights, scope: str | None, rate_limit_per_minute: int | None
) -> tuple[str, int | None]:
    """The scope and rate limit a key made by ``creator`` gets, or GrantRefused.

    Without a scope the new key gets DEFAULT_SCOPE (or the creator's, if lower); without a rate
    limit it gets the creator's own limit when the creator has one, since the service default may
    be higher than that.
    """
    if scope is None:
        scope = DEFAULT_SCOPE if scope_includes(creator.scope, DEFAULT_SCOPE) else creator.scope
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    if not scope_includes(creator.scope, scope):
        raise GrantRefused(
            "scope_exceeds_own",
            f"a key of scope {creator.scope!r} cannot create a key of scope {scope!r}",
        )
    if rate_limit_per_minute is None:
        return scope, creator.rate_limit_per_minute
    if rate_limit_per_minute > creator.effective_rate_limit:
        raise GrantRefused(
            "rate_limit_exceeds_own",
            f"a key limited to {creator.effective_rate_limit} requests per minute cannot create "
            f"a key allowed {rate_limit_per_minute}",
        )
    return scope, rate_limit_per_minute


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # shown once, never stored


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


async def create_key(
    sm: async_sessionmaker[AsyncSession],
    name: str,
    *,
    rate_limit_per_minute: int | None = None,
    scope: str | None = None,
    by: Rights | None = None,
) -> CreatedKey:
    """Create a key. ``by``: the rights of the key asking (None: the operator, at the command
    line, who may create any key); the new key never gets more than those."""
    if by is not None:
        scope, rate_limit_per_minute = granted(by, scope, rate_limit_per_minute)
    scope = scope or DEFAULT_SCOPE
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        name=name.strip() or "unnamed",
        prefix=secret[:SHOWN_PREFIX_CHARS],
        key_hash=hash_key(secret),
        rate_limit_per_minute=rate_limit_per_minute,
        scope=scope,
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
