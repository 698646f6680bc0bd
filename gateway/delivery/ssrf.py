"""Keeping webhook callbacks away from internal addresses (SSRF), at save time and at connect time.

Refused unless inside `Settings.callback_allowed_networks`: loopback, private, link-local (with the
cloud metadata address 169.254.169.254), CGNAT, multicast, unspecified and reserved addresses, and
IPv6 addresses outside global unicast 2000::/3. An IPv6 address that stands for an IPv4 one
(IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by that IPv4 address.

Two checks. The first tells whoever saves an instance at once; the second is the one that protects:

- `check_callback_url`, when an instance is saved, judges IP literals and `localhost` but resolves
  no names: an answer then proves nothing about the answer at delivery time (DNS rebinding).
- `GuardedConnector`, at delivery, judges every address aiohttp is about to connect to. Names go
  through `GuardedResolver`; IP literals never reach a resolver in aiohttp (`TCPConnector.
  _resolve_host` returns them as they are), so the connector judges those itself, in that same
  method. Every connection the session opens, redirects included, passes one of the two.

A refusal at connect time reaches the caller as aiohttp's `ClientConnectorDNSError`, whose cause is
the `CallbackRefused`; `refusal_from` digs it out. The guard judges the address the socket connects
to, so with a proxy it judges the proxy: the deliverer must not use one (aiohttp uses none unless
`trust_env=True` or `proxy=` is given).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address
from aiohttp.tracing import Trace
from yarl import URL

from gateway.errors import CallbackRefused
from gateway.settings import IPNetwork

IPAddress = IPv4Address | IPv6Address

_ALLOWED_SETTING = "GATEWAY_CALLBACK_ALLOWED_NETWORKS"
_ALLOW_HINT = f"allow it with {_ALLOWED_SETTING}"

# First match wins, so a more specific range comes before the one containing it.
_V4_REFUSED = tuple(
    (IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "reserved (this network)"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
        ("192.0.2.0/24", "reserved (documentation)"),
        ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("198.51.100.0/24", "reserved (documentation)"),
        ("203.0.113.0/24", "reserved (documentation)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # with the broadcast address 255.255.255.255
    )
)
_V6_REFUSED = tuple(
    (IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "private (local-use NAT64)"),
        ("100::/64", "reserved (discard-only)"),
        ("2001::/23", "reserved (IETF protocol assignments, Teredo)"),
        ("2001:db8::/32", "reserved (documentation)"),
        ("3fff::/20", "reserved (documentation)"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private (site-local)"),
        ("ff00::/8", "multicast"),
    )
)
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")  # :: and ::1 in it are matched by _V6_REFUSED first
_LOOPBACK_V4 = IPv4Address("127.0.0.1")
_LOOPBACK_V6 = IPv6Address("::1")


def _refusal(ip: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why `ip` must not be reached, or None when it may be."""
    if any(ip in network for network in allowed):
        return None
    for network, reason in _V6_REFUSED if isinstance(ip, IPv6Address) else _V4_REFUSED:
        if ip in network:
            return reason
    if isinstance(ip, IPv4Address):
        return None
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        as_ipv4 = _refusal(embedded, allowed)
        return None if as_ipv4 is None else f"{as_ipv4} (as IPv4 {embedded})"
    if ip not in _V6_GLOBAL_UNICAST:
        return "reserved (outside global unicast 2000::/3)"
    return None


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address that traffic to `ip` ends up at, for the forms that translate or tunnel.
    Teredo also embeds one, but 2001::/32 is refused as a whole before this is asked."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_address(ip: IPAddress, allowed: Sequence[IPNetwork]) -> None:
    """Raise `CallbackRefused` unless a callback may connect to `ip`."""
    _check_literal(str(ip), ip, allowed)


def check_callback_url(url: str, allowed: Sequence[IPNetwork]) -> None:
    """The save-time check: raise `CallbackRefused` for an IP literal host that may not be reached,
    and for `localhost` and `*.localhost` unless loopback is allowed.

    Other host names pass without a DNS lookup; what they resolve to is judged at every connection
    by `GuardedConnector`. The host is read with yarl, the parser aiohttp connects with, so the host
    judged here is the host a delivery would connect to.
    """
    try:
        host = URL(url).raw_host
    except ValueError as exc:
        # Not the URL in the message: it may carry a token.
        raise CallbackRefused(f"callback URL cannot be parsed: {type(exc).__name__}", host="") from exc
    if not host:
        raise CallbackRefused("callback URL has no host", host="")
    ip = _literal_ip(host)
    if ip is not None:
        _check_literal(host, ip, allowed)
        return
    name = host.rstrip(".").lower()
    if (name == "localhost" or name.endswith(".localhost")) and not _loopback_allowed(allowed):
        message = f"callback host {host} is loopback; allow 127.0.0.0/8 or ::1 with {_ALLOWED_SETTING}"
        raise CallbackRefused(message, host=host)


def _literal_ip(host: str) -> IPAddress | None:
    """`host` as an address, also in the legacy IPv4 forms (`127.1`, `0x7f000001`, `2130706433`)
    that getaddrinfo would turn into one, so that they are judged as what they connect to."""
    try:
        return ip_address(host)
    except ValueError:
        pass
    try:
        return IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _loopback_allowed(allowed: Sequence[IPNetwork]) -> bool:
    return any(_LOOPBACK_V4 in network or _LOOPBACK_V6 in network for network in allowed)


def _check_literal(
    host: str, ip: IPAddress, allowed: Sequence[IPNetwork], error: type[CallbackRefused] = CallbackRefused
) -> None:
    reason = _refusal(ip, allowed)
    if reason is None:
        return
    subject = (
        f"callback address {ip}" if host == str(ip) else f"callback host {host} is the address {ip}, which"
    )
    raise error(f"{subject} is {reason}; {_ALLOW_HINT}", host=host, address=str(ip))


class _ConnectRefused(CallbackRefused, OSError):
    """A refusal in the form aiohttp expects from name resolution: an OSError, which the connector
    wraps in `ClientConnectorDNSError` with this as the cause. Any other exception would leave
    `session.post` bare, outside `aiohttp.ClientError`, where code handling connection failures
    does not look. `strerror` is the part of the wrapper's message that shows the reason."""

    def __init__(self, message: str, *, host: str, address: str | None = None) -> None:
        super().__init__(message, host=host, address=address)
        self.strerror = message


def _uncheckable(host: str, address: str) -> _ConnectRefused:
    # aiohttp would hand it to the socket as an address, unresolved and unjudged: fail closed.
    message = f"callback host {host} connects to {address!r}, which is not an address that can be checked"
    return _ConnectRefused(message, host=host, address=address)


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then refuses the whole answer if any address in it may not be reached.

    Judging the addresses the connector is about to use, rather than a lookup made earlier, is what
    defeats DNS rebinding. `inner` defaults to aiohttp's threaded resolver (getaddrinfo), which
    answers as the host does (/etc/hosts, nsswitch) whether or not aiodns happens to be installed;
    it holds nothing to release. Closing this resolver closes `inner`.
    """

    def __init__(self, *, allowed: Sequence[IPNetwork], inner: AbstractResolver | None = None) -> None:
        self._allowed = tuple(allowed)
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                ip = ip_address(result["host"])
            except ValueError:
                raise _uncheckable(host, result["host"]) from None
            reason = _refusal(ip, self._allowed)
            if reason is not None:
                message = f"callback host {host} resolved to {ip}, which is {reason}; {_ALLOW_HINT}"
                raise _ConnectRefused(message, host=host, address=str(ip))
        return results

    async def close(self) -> None:
        await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A `TCPConnector` that connects only to addresses the callback policy allows.

    `resolver` is the inner resolver of its `GuardedResolver`; as with `TCPConnector`, a resolver
    passed in is the caller's to close. Other keyword arguments go to `TCPConnector`.
    """

    def __init__(
        self, *, allowed: Sequence[IPNetwork], resolver: AbstractResolver | None = None, **kwargs: Any
    ) -> None:
        self._allowed = tuple(allowed)
        super().__init__(resolver=GuardedResolver(allowed=self._allowed, inner=resolver), **kwargs)

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        # aiohttp's own test for "this host is an address, skip the resolver": exactly the hosts
        # that would otherwise go unchecked. This overrides a private method; the literal-address
        # tests fail if a new aiohttp renames it.
        if is_ip_address(host):
            ip = _literal_ip(host)
            if ip is None:
                raise _uncheckable(host, host)
            _check_literal(host, ip, self._allowed, _ConnectRefused)
        return await super()._resolve_host(host, port, traces=traces)


def refusal_from(exc: BaseException) -> CallbackRefused | None:
    """The `CallbackRefused` behind an error raised by a request through a `GuardedConnector`
    (aiohttp raises `ClientConnectorDNSError` from it), or None when the request was not refused."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, CallbackRefused):
            return current
        current = current.__cause__
    return None
