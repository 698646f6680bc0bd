"""Malformed and hostile admin requests: each one gets a 4xx with a JSON error at a path, never a 5xx
or a hang, and the gateway stays ready.

The requests are built from the seed's two instance bodies, a wrong type at every path of each, and
the inputs an attacker or a slip of the hand sends: huge strings, deep nesting, bytes that are not
JSON or not UTF-8, other content types, broken templates and date patterns, refresh intervals out of
range, and callback URLs that reach what they must not.
"""

from __future__ import annotations

import copy
import io
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.runtime import RunningGateway
from gateway.sim import Simulator
from tests.conftest import seed_instance, wait_for

_CONFIG = ("configuration",)
_ACCOUNTS = (*_CONFIG, "event.poller.configuration", "accounts")
_CALLBACK = (*_CONFIG, "event.notification.callback.url")
_INTERVAL = (*_CONFIG, "event.poller.refresh_interval")
_MEGABYTE = "x" * 1_000_000


@dataclass(frozen=True, slots=True)
class Attack:
    name: str
    body: bytes
    method: str = "POST"
    path: str = "/instances"
    content_type: str | None = "application/json"
    # The JSON path the error must name, when one is known: the field that was spoiled.
    at: str | None = None


def _json_path(keys: tuple[str | int, ...]) -> str:
    """The validator's notation: `$.a.b`, `$.a['dotted.key']`, `$.a[0]`."""
    path = "$"
    for key in keys:
        if isinstance(key, int):
            path += f"[{key}]"
        elif key.isidentifier():
            path += f".{key}"
        else:
            path += f"['{key}']"
    return path


def _leaves(node: Any, keys: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if keys:
        yield keys, node
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _leaves(child, (*keys, key))


def _with(body: dict[str, Any], keys: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    spoiled = copy.deepcopy(body)
    node: Any = spoiled
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return spoiled


def _base(kind: str, simulator: Simulator) -> dict[str, Any]:
    body = seed_instance(kind, simulator)
    body["configuration"]["event.notification.callback.url"] = "https://hooks.example.com/events"
    return body


def _post(name: str, body: dict[str, Any], at: tuple[str | int, ...] | None = None) -> Attack:
    return Attack(name, orjson.dumps(body), at=None if at is None else _json_path(at))


def _wrong_types(kind: str, body: dict[str, Any]) -> Iterator[Attack]:
    """An object where a scalar or list belongs, and a string where an object belongs."""
    for keys, node in _leaves(body):
        wrong: Any = "not an object" if isinstance(node, dict) else {"nested": [1, 2]}
        yield _post(f"{kind}: wrong type at {_json_path(keys)}", _with(body, keys, wrong), keys)


def _sizes_and_nesting(body: dict[str, Any]) -> Iterator[Attack]:
    for keys in (("name",), ("tags", 0), _CALLBACK, (*_ACCOUNTS, "url"), (*_CONFIG, "user.username")):
        yield _post(f"1 MB string at {_json_path(keys)}", _with(body, keys, _MEGABYTE), keys)
    yield _post(
        "1 MB header value", _with(body, (*_CONFIG, "event.notification.callback.headers"), {"X": _MEGABYTE})
    )
    yield Attack("2 MB body", orjson.dumps({**body, "name": _MEGABYTE * 2}))
    yield Attack("nesting 100,000 deep", b"[" * 100_000 + b"]" * 100_000)
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"d": deep}
    yield _post("nested 200 deep where a string belongs", _with(body, ("name",), deep), ("name",))
    yield _post("nested 200 deep as a resource", _with(body, _ACCOUNTS, {"url": deep}), (*_ACCOUNTS, "url"))


def _bad_bytes(body: dict[str, Any]) -> Iterator[Attack]:
    valid = orjson.dumps(body)
    for name, raw in {
        "empty body": b"",
        "unterminated object": b'{"name": "x"',
        "trailing comma": b'{"name": "x",}',
        "single quotes": b"{'name': 'x'}",
        "NaN": b'{"name": NaN}',
        "trailing garbage": valid + b" garbage",
        "two documents": valid + valid,
        "a bare string": b'"instance"',
        "a bare number": b"42",
        "null": b"null",
        "an array": b"[" + valid + b"]",
        "latin-1 bytes in a string": valid.replace(b'"seed-2016"', b'"caf\xe9"'),
        "a UTF-16 body": valid.decode().encode("utf-16"),
        "0xff bytes": b"\xff\xfe\xfd",
        "a lone surrogate escape": valid.replace(b'"seed-2016"', b'"\\ud800"'),
        "NUL bytes": b"\x00" * 64,
    }.items():
        yield Attack(name, raw)
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/html",
        None,
    ):
        yield Attack(f"content type {content_type}", valid, content_type=content_type)
    yield Attack("PATCH an unknown instance", b"{}", method="PATCH", path="/instances/no-such-instance")
    yield Attack("PATCH with a JSON array", b"[]", method="PATCH", path="/instances/no-such-instance")
    yield Attack("DELETE an unknown instance", b"", method="DELETE", path="/instances/no-such-instance")
    # Up to aiohttp's request-line limit (8190 bytes); past it aiohttp answers 400 before any route.
    yield Attack("GET an id of 8,000 characters", b"", method="GET", path="/instances/" + "i" * 8_000)
    yield Attack("an unknown route", b"{}", path="/instances/x/nothing-here")
    yield Attack("a method the route has not", b"{}", method="PUT", path="/instances")
    replay = "/instances/x/deliveries/replay"
    yield Attack("replay with a bad since", b'{"since": "yesterday"}', path=replay, at="$.since")
    yield Attack("replay with ids not a list", b'{"ids": "e1"}', path=replay, at="$.ids")
    yield Attack("replay with a JSON array", b"[]", path=replay)
    yield Attack(
        "replay as text/plain", b'{"since": "2026-01-01T00:00:00Z"}', path=replay, content_type="text/plain"
    )
    yield Attack("deliveries with a bad limit", b"", method="GET", path="/instances/x/deliveries?limit=-5")


def _templates_and_dates(body: dict[str, Any]) -> Iterator[Attack]:
    url = (*_ACCOUNTS, "url")
    for template in (
        "/hubs/crm/accounts?where=modifiedon>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss",
        "/hubs/crm/accounts?where=modifiedon>'${gmtDate:}'",
        "/hubs/crm/accounts?where=modifiedon>'${gmtDate:qqqq}'",
        "/hubs/crm/accounts?where=modifiedon>'${nosuch:yyyy}'",
        "/hubs/crm/accounts?where=modifiedon>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'",
        "/hubs/crm/accounts?where=modifiedon>'${",
    ):
        yield _post(f"template {template[-30:]}", _with(body, url, template), url)
    formats = (*_ACCOUNTS, "datesConfiguration", "updatedDateFormat")
    for pattern in ("yyyy-MM-dd'T", "qqqq", "yyyy-MM-dd'T'HH:mm:ss.SSSXXXXXX", "", "'", "yyyy-MM-ddTHH"):
        yield _post(f"date format {pattern!r}", _with(body, formats, pattern), formats)


def _intervals(body: dict[str, Any]) -> Iterator[Attack]:
    for interval in ("0", "-1", "-0.5", "1e308", "99999999999", "NaN", "inf", "", "ten", "0x10", 0, -3):
        yield _post(f"refresh interval {interval!r}", _with(body, _INTERVAL, interval), _INTERVAL)


def _callbacks(body: dict[str, Any]) -> Iterator[Attack]:
    for url in (
        "ftp://hooks.example.com/events",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "//hooks.example.com/events",
        "http:///events",
        "http://0.0.0.0/events",
        "http://0/events",
        "http://127.0.0.1/events",
        "http://127.1/events",
        "http://2130706433/events",
        "http://017700000001/events",
        "http://0177.0.0.1/events",
        "http://0x7f.0.0.1/events",
        "http://0x7f000001/events",
        "http://[::1]/events",
        "http://[::ffff:127.0.0.1]/events",
        "http://[::ffff:7f00:1]/events",
        "http://[0:0:0:0:0:ffff:a9fe:a9fe]/events",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/events",
        "http://192.168.1.1/events",
        "http://[fd00::1]/events",
        "http://localhost/events",
        "http://api.localhost/events",
        "http://hooks.example.com@127.0.0.1/events",
        "http://user:pass@169.254.169.254/",
        "http://127.0.0.1#@hooks.example.com/events",
        "http://[::ffff:10.0.0.1]:443/events",
    ):
        yield _post(f"callback {url}", _with(body, _CALLBACK, url), _CALLBACK)


def attacks(simulator: Simulator) -> list[Attack]:
    found: list[Attack] = []
    for kind in ("2016", "earlier"):
        found.extend(_wrong_types(kind, _base(kind, simulator)))
    body = _base("2016", simulator)
    for family in (_sizes_and_nesting, _bad_bytes, _templates_and_dates, _intervals, _callbacks):
        found.extend(family(body))
    return found


async def _answer(api: aiohttp.ClientSession, attack: Attack) -> tuple[int, Any]:
    headers = {} if attack.content_type is None else {"Content-Type": attack.content_type}
    async with api.request(
        attack.method,
        attack.path,
        data=io.BytesIO(attack.body),
        headers=headers,
        skip_auto_headers=("Content-Type",),
    ) as response:
        raw = await response.read()
        try:
            return response.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return response.status, raw[:200]


def _wrong(attack: Attack, status: int, answer: Any) -> str | None:
    """What is wrong with the gateway's answer to `attack`, or None."""
    if not 400 <= status < 500:
        return f"status {status}"
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if not errors or not all(isinstance(e.get("path"), str) and e.get("message") for e in errors):
        return f"not a JSON error with paths: {answer!r}"[:300]
    paths = [e["path"] for e in errors]
    if attack.at is not None and not any(attack.at.startswith(p) or p.startswith(attack.at) for p in paths):
        return f"errors at {paths}, none at {attack.at}"
    return None


@pytest.mark.timeout(300)
async def test_every_hostile_request_gets_a_4xx_at_a_path_and_the_gateway_stays_ready(
    gateway: RunningGateway, api: aiohttp.ClientSession, simulator: Simulator
) -> None:
    async def ready() -> bool:
        async with api.get("/readyz") as response:
            return response.status == 200

    await wait_for(ready)
    planned = attacks(simulator)
    assert len(planned) >= 150
    wrong: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    slowest = 0.0
    for attack in planned:
        started = time.monotonic()
        status, answer = await _answer(api, attack)
        slowest = max(slowest, time.monotonic() - started)
        statuses[status] += 1
        if (problem := _wrong(attack, status, answer)) is not None:
            wrong[attack.name] = problem
    print(
        f"\nhostile input: {len(planned)} requests, statuses {dict(sorted(statuses.items()))},"
        f" slowest answer {slowest:.2f} s"
    )
    assert not wrong, "\n".join(f"{name}: {problem}" for name, problem in wrong.items())
    assert await ready()
    async with api.get("/instances") as response:
        assert await response.json() == []
