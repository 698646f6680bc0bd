"""The simulator: tables, auth, service protection and faults behind one aiohttp server."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType

from aiohttp import web

from gateway.sim._app import create_app
from gateway.sim._auth import Authority
from gateway.sim._clock import Clock, utc_now
from gateway.sim._faults import Faults
from gateway.sim._generator import ChangeGenerator, GeneratorSettings
from gateway.sim._limits import Limits, ServiceProtection
from gateway.sim._records import ENTITY_SETS
from gateway.sim._request_log import RequestRecord
from gateway.sim._store import DataverseState

logger = logging.getLogger(__name__)

# Credentials `run_simulator` accepts unless told otherwise; the simulator is a loopback test double.
DEMO_USERS: Mapping[str, str] = {"demo@contoso.example": "demo-password"}
DEMO_CLIENTS: Mapping[str, str] = {"event-gateway-demo": "demo-secret"}


class _Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Simulator:
    """A Dataverse Web API double serving `/api/data/v9.2/<entity set>` over HTTP.

    Use it as an async context manager; it listens on `host:port` (port 0 picks a free one) and
    `base_url` names it once started. Tests change `state`, `faults`, `protection.limits` and
    `authority` in-process, or through the admin endpoints under `/_sim/`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, str] | None = None,
        clients: Mapping[str, str] | None = None,
        token_lifetime_seconds: float = 3600.0,
        limits: Limits | None = None,
        expire_change_tracking_days: float = 7.0,
        clock: Clock = utc_now,
        seed: int | None = None,
        entity_sets: Iterable[str] = ENTITY_SETS,
        request_log_size: int = 10_000,
    ) -> None:
        self._host = host
        self._port = port
        self.clock = clock
        seeds = random.Random(seed)
        self.fault_rng = random.Random(seeds.getrandbits(64))
        self.faults = Faults()
        self.state = DataverseState(
            stamp_clock=self._stamp_time, rng=random.Random(seeds.getrandbits(64)), entity_sets=entity_sets
        )
        self.authority = Authority(
            users=users or {},
            clients=clients or {},
            token_lifetime_seconds=token_lifetime_seconds,
            clock=clock,
        )
        self.protection = ServiceProtection(limits or Limits(), clock)
        self.change_tracking_expiry = timedelta(days=expire_change_tracking_days)
        self.generator = ChangeGenerator(self.state, random.Random(seeds.getrandbits(64)))
        self.requests: deque[RequestRecord] = deque(maxlen=request_log_size)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._phase = _Phase.NEW

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`, without a trailing slash."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not running")
        return self._base_url

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/data/v9.2"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/adfs/oauth2/token"

    async def start(self) -> None:
        if self._phase is not _Phase.NEW:
            raise RuntimeError(f"cannot start a simulator that is {self._phase.value}")
        self._phase = _Phase.RUNNING
        runner = web.AppRunner(create_app(self), access_log=None)
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await self.close()
            raise
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop the generator and the server; a crash of the generator surfaces here."""
        if self._phase is _Phase.CLOSED:
            return
        self._phase = _Phase.CLOSED
        try:
            await self.generator.stop()
        finally:
            if self._runner is not None:
                await self._runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _stamp_time(self) -> datetime:
        return self.clock() + timedelta(seconds=self.faults.skew_seconds)


async def run_simulator(
    host: str,
    port: int,
    *,
    seed_records: int,
    change_rate: float,
    entity_sets: Sequence[str] = ENTITY_SETS,
    users: Mapping[str, str] = DEMO_USERS,
    clients: Mapping[str, str] = DEMO_CLIENTS,
    token_lifetime_seconds: float = 3600.0,
    seed: int | None = None,
) -> None:
    """Serve a simulator until cancelled: `seed_records` rows in each table, `change_rate` changes/s."""
    async with Simulator(
        host=host,
        port=port,
        users=users,
        clients=clients,
        token_lifetime_seconds=token_lifetime_seconds,
        seed=seed,
        entity_sets=entity_sets,
    ) as simulator:
        for entity_set in entity_sets:
            simulator.state.bulk_load(entity_set, seed_records)
        if change_rate > 0:
            await simulator.generator.start(GeneratorSettings(rate=change_rate, tables=tuple(entity_sets)))
        logger.info(
            "Dataverse simulator at %s: users %s, clients %s",
            simulator.api_url,
            sorted(users),
            sorted(clients),
        )
        await asyncio.Event().wait()
