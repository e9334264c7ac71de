"""The one guarded HTTP client for requests to URLs that users gave (webhook subscriptions).

A user-given URL must not turn the service into a proxy into its own network. So, for every
request: only http and https; no credentials in the URL; no redirects; and no loopback, private,
CGNAT, link-local (cloud metadata), multicast, reserved or unspecified address, nor the service's
own API. The address check sits in the connector's resolver: the connector connects to exactly
the addresses the resolver returned, after they were checked, so a name that resolves to a public
address at the check and to the loopback a moment later (DNS rebinding) gains nothing. TLS still
verifies the certificate against the URL's host name.

The same checks run when a subscription is registered (``vet``), to refuse early with a clear
message; delivery does not trust that earlier answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bridge.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Shared address space of carrier-grade NAT (RFC 6598): not private in ipaddress' sense, yet
# inside some provider's network.
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Cloud metadata services outside link-local space (Alibaba's sits in CGNAT, AWS' IPv6 one in ULA):
# refused even where private targets are allowed.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254")
)
METADATA_NAMES = frozenset(
    ("metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal")
)  # fmt: skip
# "This network" (RFC 791): 0.x.x.x is no destination, whatever ipaddress calls it.
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
# IPv6 prefixes that carry an IPv4 address a translator may forward to (NAT64, RFC 6052).
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# How long registration waits for a name to resolve.
VET_RESOLVE_SECONDS = 5.0
# A receiver's answer body is not used; read at most this much of it to keep the connection.
MAX_ANSWER_BYTES = 64 * 1024

# The words shown to users for a refused target (registration details, delivery log).
ADDRESS_NOT_ALLOWED = "refused: address not allowed"
CREDENTIALS_IN_URL = "refused: credentials in URL"


class TargetRefused(OSError):
    """A target the policy refuses; ``reason`` is safe to show to the user who gave the URL."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # For registration only, where the user typed the address themselves: which rule.
        self.detail = detail or reason


@dataclass(frozen=True)
class TargetPolicy:
    allow_private: bool = False
    # (host, port) pairs that are this service itself: its public URL and its listening address.
    own_origins: frozenset[tuple[str, int]] = frozenset()
    own_port: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TargetPolicy:
        origins = set()
        for url in (settings.base_url, settings.local_url):
            parsed = URL(url)
            if parsed.raw_host and parsed.port is not None:
                origins.add((_canonical_name(parsed.raw_host), parsed.port))
        return cls(
            allow_private=settings.webhook_allow_private_targets,
            own_origins=frozenset(origins),
            own_port=settings.port,
        )

    def address_refusal(self, address: IPAddress, port: int) -> str | None:
        """Why ``address`` may not be connected to, or None when it may."""
        inner = _embedded_ipv4(address)
        if inner is not None:
            return self.address_refusal(inner, port)
        if address in METADATA_ADDRESSES or address.is_link_local:
            return "a link-local or metadata address"
        if address.is_unspecified or address in THIS_NETWORK:
            return "an unspecified address"
        if address.is_multicast:
            return "a multicast address"
        if port == self.own_port and _is_local(address):
            return "the service's own address"
        if address.is_loopback:
            kind = "a loopback address"
        elif address.is_reserved:
            return "a reserved address"
        elif address in CGNAT:
            kind = "a shared (CGNAT) address"
        elif address.is_private or (address.version == 6 and address.is_site_local):
            kind = "a private address"
        elif not address.is_global:
            kind = "a non-public address"
        else:
            return None
        return None if self.allow_private else kind


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form reaches: mapped, 6to4, Teredo client, NAT64, compatible."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64 or (int(address) >> 32 == 0 and int(address) > 1):
        # The last 32 bits: NAT64's well-known prefix, and deprecated IPv4-compatible ::a.b.c.d.
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_local(address: IPAddress) -> bool:
    """Whether the address belongs to this machine (it can be bound to)."""
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        # Not ours (or no such address family here at all).
        return False
    return True


def _canonical_name(host: str) -> str:
    return host.rstrip(".").lower()


def _literal(host: str) -> IPAddress | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.split("%", 1)[0])
    return None


def _numeric_spelling(host: str) -> bool:
    """Hex, octal, integer or shortened IPv4 (0x7f000001, 0177.0.0.1, 2130706433, 127.1): the
    system resolver turns them into addresses; no public receiver needs them."""
    parts = host.split(".")
    return all(p and (p.isdigit() or p.lower().startswith("0x")) for p in parts) and (
        _literal(host) is None
    )


@dataclass(frozen=True)
class Target:
    url: URL
    host: str
    port: int


def check_url(policy: TargetPolicy, url: str) -> Target:
    """The checks that need no name resolution; raises TargetRefused.

    The URL is parsed by yarl, as aiohttp parses it, and the request is sent with that very
    parse: two parsers that disagree on the host (``http://a\\@b/``) would let one host be
    checked and another reached."""
    try:
        parsed = URL(url)
        port = parsed.port
    except (ValueError, TypeError) as exc:
        raise TargetRefused("refused: invalid URL", "url is not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.raw_host or port is None:
        raise TargetRefused("refused: not an http(s) URL", "url must be an http(s) URL")
    if parsed.user is not None or parsed.password is not None or "@" in parsed.raw_authority:
        raise TargetRefused(
            CREDENTIALS_IN_URL,
            "url must not carry credentials (user:password@); the receiver checks the "
            "Callbridge-Signature header instead",
        )
    host = _canonical_name(parsed.raw_host)
    if (host, port) in policy.own_origins:
        raise TargetRefused(ADDRESS_NOT_ALLOWED, "url points at this service itself")
    if host in METADATA_NAMES:
        raise TargetRefused(ADDRESS_NOT_ALLOWED, "url points at a cloud metadata service")
    if not policy.allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise TargetRefused(ADDRESS_NOT_ALLOWED, "url points at a loopback address")
    if _numeric_spelling(host):
        raise TargetRefused(
            ADDRESS_NOT_ALLOWED, "url's host is an IPv4 address in an unusual spelling"
        )
    literal = _literal(host)
    if literal is not None:
        # aiohttp connects to an address literal without asking the resolver: checked here.
        refusal = policy.address_refusal(literal, port)
        if refusal is not None:
            raise TargetRefused(ADDRESS_NOT_ALLOWED, f"url points at {refusal}")
    return Target(parsed, host, port)


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses the name when any of its addresses is refused, so the
    connector only ever connects to addresses that were checked."""

    def __init__(self, policy: TargetPolicy, inner: AbstractResolver) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if _canonical_name(host) in METADATA_NAMES:
            raise TargetRefused(ADDRESS_NOT_ALLOWED, "url points at a cloud metadata service")
        found = await self._inner.resolve(host, port, family)
        if not found:
            raise OSError(socket.EAI_NONAME, "no address")
        for result in found:
            # Every address, not the first: the connector may try any of them.
            address = _literal(result["host"])
            refusal = (
                "an unparseable address"
                if address is None
                else self._policy.address_refusal(address, result["port"] or port)
            )
            if refusal is not None:
                raise TargetRefused(ADDRESS_NOT_ALLOWED, f"url's host resolves to {refusal}")
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Answer:
    """What one request came to: the receiver's status, or an error safe to show the user."""

    status: int | None
    error: str | None
    # A policy refusal: trying the same target again later is pointless.
    refused: bool = False


class GuardedClient:
    """Every outgoing request to a user-given URL goes through here."""

    def __init__(
        self,
        policy: TargetPolicy,
        *,
        timeout_seconds: float,
        resolver: AbstractResolver | None = None,
        user_agent: str = "callbridge-webhooks/1",
    ) -> None:
        self._policy = policy
        self._timeout = timeout_seconds
        self._inner = resolver
        self._user_agent = user_agent
        self._resolver: GuardedResolver | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # The system resolver needs the running loop: made here, not in __init__.
        self._resolver = GuardedResolver(self._policy, self._inner or aiohttp.DefaultResolver())
        connector = aiohttp.TCPConnector(resolver=self._resolver)
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={"User-Agent": self._user_agent},
            # No proxy from the environment, no cookies carried from one receiver to another.
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        # The connector closes only a resolver it made itself; a given one is its giver's.
        if self._resolver is not None and self._inner is None:
            await self._resolver.close()

    async def vet(self, url: str) -> None:
        """Registration's check: the URL and every address its host resolves to now.

        A name that does not resolve is refused too: nothing could be delivered to it, and a
        typo is better caught now. Raises TargetRefused with ``detail`` for the user."""
        assert self._resolver is not None, "start() first"
        target = check_url(self._policy, url)
        if _literal(target.host) is not None:
            return
        try:
            async with asyncio.timeout(VET_RESOLVE_SECONDS):
                await self._resolver.resolve(target.host, target.port, socket.AF_UNSPEC)
        except TargetRefused:
            raise
        except (OSError, TimeoutError) as exc:
            raise TargetRefused(
                "refused: host name does not resolve", "url's host name does not resolve"
            ) from exc

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        assert self._http is not None, "start() first"
        try:
            target = check_url(self._policy, url)
            async with self._http.post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.content.read(MAX_ANSWER_BYTES)
                status = response.status
        except Exception as exc:  # every failure becomes a safe word (see _failure)
            return _failure(exc)
        if 200 <= status < 300:
            return Answer(status, None)
        if 300 <= status < 400:
            return Answer(status, f"HTTP {status}: redirect not followed")
        return Answer(status, f"HTTP {status}")


def _failure(exc: BaseException) -> Answer:
    """The user sees what kind of failure it was, never the OS text with addresses and ports:
    telling 'connection refused' from 'timed out' per port is what makes a port scanner."""
    refused = _cause(exc, TargetRefused)
    if refused is not None:
        return Answer(None, refused.reason, refused=True)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return Answer(None, "timed out")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Answer(None, "host name did not resolve")
    if isinstance(exc, aiohttp.ClientSSLError):
        return Answer(None, "TLS handshake failed")
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return Answer(None, "refused: invalid URL", refused=True)
    return Answer(None, "connection failed")


def _cause(exc: BaseException | None, kind: type[TargetRefused]) -> TargetRefused | None:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or getattr(exc, "os_error", None)
        seen += 1
    return None
