"""A real Dataverse simulator on loopback, a real aiohttp session, and a factory of adapters."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from gateway.instances.model import SourceConnection
from gateway.metrics import SourceMetrics
from gateway.sim import ManualClock, Simulator
from gateway.sources.dynamics.client import DynamicsSource

from ._support import CLIENT_ID, CLIENT_SECRET, FAST_RETRIES, PASSWORD, USER, MakeSource, SentRequest


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    async with Simulator(
        users={USER: PASSWORD}, clients={CLIENT_ID: CLIENT_SECRET}, clock=clock, seed=7
    ) as simulator:
        yield simulator


@pytest.fixture
def sent() -> list[SentRequest]:
    """Every request the adapter's session sent, headers included, as aiohttp's tracing saw it."""
    return []


@pytest.fixture
async def session(sent: list[SentRequest]) -> AsyncIterator[aiohttp.ClientSession]:
    async def on_request_start(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        sent.append(SentRequest(params.method, params.url, dict(params.headers)))

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[tracing]) as client_session:
        yield client_session


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def connection(sim: Simulator) -> SourceConnection:
    return SourceConnection(
        base_url=sim.base_url,
        api_version="v9.2",
        username=USER,
        password=PASSWORD,
        oauth_token_url=sim.token_url,
        oauth_client_id=None,
        oauth_client_secret=None,
        oauth_scope=None,
    )


@pytest.fixture
def make_source(
    connection: SourceConnection, session: aiohttp.ClientSession, registry: CollectorRegistry
) -> MakeSource:
    """A DynamicsSource on the simulator; keyword arguments replace connection fields or constructor
    arguments."""
    metrics = SourceMetrics(registry)
    fields = {field.name for field in dataclasses.fields(SourceConnection)}

    def make(**overrides: Any) -> DynamicsSource:
        changes = {name: overrides.pop(name) for name in list(overrides) if name in fields}
        overrides.setdefault("retry_policy", FAST_RETRIES)
        return DynamicsSource(
            dataclasses.replace(connection, **changes), session=session, metrics=metrics, **overrides
        )

    return make
