"""The callback guard. Connections go to 127.0.0.1 only, and refused ones are never attempted."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery import GuardedConnector, check_address, check_callback_url, refusal_from
from gateway.errors import CallbackRefused, DeliveryError
from gateway.settings import IPNetwork

LOOPBACK = [ip_network("127.0.0.0/8")]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("100.127.255.255", "shared address space (CGNAT)"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "reserved (this network)"),
        ("192.0.0.8", "reserved (IETF protocol assignments)"),
        ("192.0.2.1", "reserved (documentation)"),
        ("198.18.0.1", "reserved (benchmarking)"),
        ("198.19.255.255", "reserved (benchmarking)"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fc00::1", "private (unique local)"),
        ("fd12:3456::1", "private (unique local)"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "private (site-local)"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "reserved (documentation)"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved (IETF protocol assignments, Teredo)"),
        ("64:ff9b:1::a00:1", "private (local-use NAT64)"),
        ("100::1", "reserved (discard-only)"),
        ("4000::1", "reserved (outside global unicast 2000::/3)"),
        ("::ffff:127.0.0.1", "loopback (as IPv4 127.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (as IPv4 169.254.169.254)"),
        ("::10.0.0.5", "private (as IPv4 10.0.0.5)"),  # IPv4-compatible
        ("64:ff9b::10.0.0.5", "private (as IPv4 10.0.0.5)"),  # NAT64
        ("2002:c0a8:0101::1", "private (as IPv4 192.168.1.1)"),  # 6to4
        ("2002:7f00:1::", "loopback (as IPv4 127.0.0.1)"),
    ],
)
def test_refused_addresses(address: str, reason: str) -> None:
    with pytest.raises(CallbackRefused) as raised:
        check_address(ip_address(address), [])
    assert str(raised.value) == (
        f"callback address {address if '%' in address else ip_address(address)} is {reason}; "
        "allow it with GATEWAY_CALLBACK_ALLOWED_NETWORKS"
    )
    assert raised.value.address == str(ip_address(address))
    assert isinstance(raised.value, DeliveryError)
    assert not raised.value.retriable


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "100.63.255.255",  # just below CGNAT
        "172.32.0.1",  # just above 172.16/12
        "2606:2800:220:1::1",
        "2a00:1450:4001:80b::200e",
        "::ffff:93.184.216.34",
        "64:ff9b::93.184.216.34",
        "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
    ],
)
def test_public_addresses_are_accepted(address: str) -> None:
    check_address(ip_address(address), [])


@pytest.mark.parametrize(
    ("address", "allowed", "accepted"),
    [
        ("10.0.0.5", ["10.0.0.0/8"], True),
        ("10.0.0.5", ["10.1.0.0/16"], False),
        ("169.254.169.254", ["10.0.0.0/8", "169.254.169.254/32"], True),
        ("::ffff:10.0.0.5", ["10.0.0.0/8"], True),  # judged as the IPv4 address it stands for
        ("64:ff9b::a00:5", ["10.0.0.0/8"], True),
        ("fd00::5", ["fd00::/8"], True),
        ("fd00::5", ["10.0.0.0/8"], False),
        ("127.0.0.1", ["::1/128"], False),
    ],
)
def test_the_allow_list(address: str, allowed: list[str], accepted: bool) -> None:
    networks = [ip_network(n) for n in allowed]
    if accepted:
        check_address(ip_address(address), networks)
    else:
        with pytest.raises(CallbackRefused):
            check_address(ip_address(address), networks)


def _verdict(ip: IPv4Address | IPv6Address, allowed: Sequence[IPNetwork]) -> bool:
    try:
        check_address(ip, allowed)
    except CallbackRefused:
        return False
    return True


_V4_NETWORKS = ["10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10", "192.168.1.0/24", "0.0.0.0/0"]


@given(
    value=st.integers(0, 2**32 - 1),
    allowed=st.lists(st.sampled_from(_V4_NETWORKS).map(ip_network), max_size=2),
)
def test_an_ipv4_address_and_its_ipv6_forms_get_the_same_verdict(
    value: int, allowed: list[IPNetwork]
) -> None:
    ip = IPv4Address(value)
    verdict = _verdict(ip, allowed)
    assert _verdict(IPv6Address(f"::ffff:{ip}"), allowed) == verdict
    assert _verdict(IPv6Address(f"64:ff9b::{ip}"), allowed) == verdict
    assert _verdict(IPv6Address((0x2002 << 112) | (value << 80) | 1), allowed) == verdict


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://[::1]:8080/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.1/hook",  # legacy forms getaddrinfo still accepts
        "http://2130706433/hook",
        "http://0x7f000001/hook",
        "http://localhost/hook",
        "http://LOCALHOST./hook",
        "http://api.localhost:8080/hook",
    ],
)
def test_check_callback_url_refuses_internal_hosts(url: str) -> None:
    with pytest.raises(CallbackRefused):
        check_callback_url(url, [])


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://example.com/hook", []),
        ("https://93.184.216.34/hook", []),
        ("https://[2606:2800:220:1::1]/hook", []),
        ("http://rebind.test/hook", []),  # names are not resolved at save time
        ("http://localhost:8080/hook", ["127.0.0.0/8"]),
        ("http://localhost:8080/hook", ["::1/128"]),
        ("http://10.0.0.5/hook", ["10.0.0.0/8"]),
    ],
)
def test_check_callback_url_accepts(url: str, allowed: list[str]) -> None:
    check_callback_url(url, [ip_network(n) for n in allowed])


def test_localhost_stays_refused_when_only_other_networks_are_allowed() -> None:
    with pytest.raises(CallbackRefused, match=re.escape("allow 127.0.0.0/8 or ::1")):
        check_callback_url("http://localhost/hook", [ip_network("10.0.0.0/8")])


def test_check_callback_url_names_the_host_not_the_url() -> None:
    with pytest.raises(CallbackRefused) as raised:
        check_callback_url("http://user:s3cret@10.0.0.5/hook?token=t0ken", [])
    assert str(raised.value) == (
        "callback address 10.0.0.5 is private; allow it with GATEWAY_CALLBACK_ALLOWED_NETWORKS"
    )
    assert raised.value.host == "10.0.0.5"


def test_check_callback_url_refuses_a_url_without_host() -> None:
    with pytest.raises(CallbackRefused, match="no host"):
        check_callback_url("http:///hook", [])


class _StaticResolver(AbstractResolver):
    """A real resolver with a fixed table, standing in for DNS answers we cannot get from /etc/hosts.
    Each call takes the next answer of a name, the last one repeating: a rebinding name."""

    def __init__(self, answers: Mapping[str, Sequence[Sequence[str]]]) -> None:
        self._answers = {name: list(seq) for name, seq in answers.items()}
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        queue = self._answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


class _Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.hits = 0


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    app = web.Application()
    runner = web.AppRunner(app)
    state = _Server(0)

    async def hook(request: web.Request) -> web.Response:
        state.hits += 1
        return web.Response(status=204)

    app.router.add_post("/hook", hook)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    yield state
    await runner.cleanup()


async def _post(url: str, connector: GuardedConnector) -> int:
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=b"{}") as response,
    ):
        return response.status


async def test_a_loopback_server_is_refused_by_default(server: _Server) -> None:
    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(f"http://127.0.0.1:{server.port}/hook", GuardedConnector(allowed=[]))
    assert isinstance(raised.value.__cause__, CallbackRefused)
    refusal = refusal_from(raised.value)
    assert refusal is not None
    assert (
        str(refusal)
        == "callback address 127.0.0.1 is loopback; allow it with GATEWAY_CALLBACK_ALLOWED_NETWORKS"
    )
    assert "is loopback" in str(raised.value)  # aiohttp's own message shows the reason too
    assert server.hits == 0


async def test_a_loopback_server_is_reachable_when_allowed(server: _Server) -> None:
    assert await _post(f"http://127.0.0.1:{server.port}/hook", GuardedConnector(allowed=LOOPBACK)) == 204
    assert server.hits == 1


@pytest.mark.parametrize("host", ["[::1]", "[::ffff:127.0.0.1]", "127.1", "localhost"])
async def test_other_spellings_of_loopback_are_refused(server: _Server, host: str) -> None:
    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(f"http://{host}:{server.port}/hook", GuardedConnector(allowed=[]))
    assert refusal_from(raised.value) is not None
    assert server.hits == 0


async def test_a_name_resolving_to_loopback_passes_save_time_but_is_refused_at_connect(
    server: _Server,
) -> None:
    url = f"http://rebind.test:{server.port}/hook"
    check_callback_url(url, [])
    resolver = _StaticResolver({"rebind.test": [["127.0.0.1"]]})
    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(url, GuardedConnector(allowed=[], resolver=resolver))
    refusal = refusal_from(raised.value)
    assert refusal is not None
    assert (refusal.host, refusal.address) == ("rebind.test", "127.0.0.1")
    assert "callback host rebind.test resolved to 127.0.0.1, which is loopback" in str(refusal)
    assert server.hits == 0


async def test_the_connection_goes_to_the_address_that_was_checked(server: _Server) -> None:
    resolver = _StaticResolver({"rebind.test": [["127.0.0.1"]]})
    connector = GuardedConnector(allowed=LOOPBACK, resolver=resolver)
    assert await _post(f"http://rebind.test:{server.port}/hook", connector) == 204
    assert server.hits == 1


async def test_one_refused_address_in_an_answer_refuses_the_answer(server: _Server) -> None:
    # 127.0.0.1 stands for the acceptable address, so that a broken guard reaches no one but `server`.
    resolver = _StaticResolver({"rebind.test": [["127.0.0.1", "127.0.0.2"]]})
    connector = GuardedConnector(allowed=[ip_network("127.0.0.1/32")], resolver=resolver)
    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(f"http://rebind.test:{server.port}/hook", connector)
    refusal = refusal_from(raised.value)
    assert refusal is not None
    assert refusal.address == "127.0.0.2"
    assert server.hits == 0


async def test_a_rebinding_name_is_refused_on_the_lookup_that_rebinds(server: _Server) -> None:
    # Allowed: only 127.0.0.1. The name first answers it, then 127.0.0.2 (an "internal" address).
    resolver = _StaticResolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    connector = GuardedConnector(
        allowed=[ip_network("127.0.0.1/32")], resolver=resolver, use_dns_cache=False, force_close=True
    )
    url = f"http://rebind.test:{server.port}/hook"
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(url, data=b"{}") as response:
            assert response.status == 204
        with pytest.raises(aiohttp.ClientConnectorError) as raised:
            await session.post(url, data=b"{}")
    refusal = refusal_from(raised.value)
    assert refusal is not None
    assert refusal.address == "127.0.0.2"
    assert (server.hits, resolver.lookups) == (1, 2)


async def test_refusal_from_finds_nothing_in_an_ordinary_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(aiohttp.ClientConnectorError) as raised:
        await _post(f"http://127.0.0.1:{closed_port}/hook", GuardedConnector(allowed=LOOPBACK))
    assert refusal_from(raised.value) is None
