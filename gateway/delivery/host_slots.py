"""Fairness between callback hosts: in-flight limits per host and overall, a bounded backlog for a
host that is failing or slow, and a circuit breaker per host.

A host is named by the handler: `host:port` for instances' callbacks, which share it, and
`host:port for subscription <instance>/<id>` for a subscription, which has its own (`handler.py`).

A host is *degraded* when its breaker is not closed, or it is slow (`_degraded`: its
requests run long while none comes back and other hosts' do). A
degraded host keeps at most `backlog` events waiting for one of its slots; more are skipped
(`CallbackSkipped`, reason `backlog`), which parks them for later, whether they arrive then or
were already waiting; that is not an attempt. A healthy host's events wait, however many, bounded
only by the deliverer's pending limit: a busy endpoint is not a slow one.

The breaker opens after `failures` consecutive failed requests. While open, events are skipped
without a request. After `cooldown` seconds one probe request is let through (half-open): success
closes the breaker, failure opens it for another cool-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from gateway.errors import CallbackSkipped
from gateway.metrics import DeliveryMetrics

Clock = Callable[[], float]


class _Circuit(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class _Host:
    """One callback host: its slots (a FIFO of waiters, so that a waiter can be shed), its requests
    in flight and its breaker."""

    __slots__ = (
        "active",
        "circuit",
        "failures",
        "in_flight",
        "last_completed",
        "limit",
        "name",
        "opened_until",
        "probing",
        "queue",
    )

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.active = 0  # slots held
        self.queue: deque[asyncio.Future[None]] = deque()  # waiting for a slot, oldest first
        self.in_flight: dict[object, float] = {}  # the request's task -> monotonic start
        self.last_completed = float("-inf")
        self.failures = 0  # consecutive
        self.circuit = _Circuit.CLOSED
        self.opened_until = 0.0
        self.probing = False

    @property
    def idle(self) -> bool:
        return not (self.active or self.queue or self.failures) and self.circuit is _Circuit.CLOSED

    async def acquire(self) -> None:
        if self.active < self.limit and not self.queue:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append(waiter)
        try:
            await waiter  # resolved: the releaser handed its slot over; failed: shed
        except asyncio.CancelledError:
            if waiter.cancelled():
                # A release that ran between the cancellation and this line dropped it already.
                with contextlib.suppress(ValueError):
                    self.queue.remove(waiter)
            elif waiter.exception() is None:
                self.release()  # handed over as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self.queue:
            waiter = self.queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1

    def shed(self, keep: int, error: Callable[[], CallbackSkipped]) -> None:
        """Fail the newest waiters until `keep` are left; the oldest keep their turn."""
        while len(self.queue) > keep:
            waiter = self.queue.pop()
            if not waiter.done():
                waiter.set_exception(error())


class HostSlots:
    """Each callback host's slots, backlog and breaker in one deliverer process, under one overall
    limit. Hosts are forgotten when idle and healthy."""

    def __init__(
        self,
        *,
        concurrency: int,
        host_concurrency: int,
        backlog: int,
        failures: int,
        cooldown: float,
        slow_after: float,
        metrics: DeliveryMetrics,
        clock: Clock = time.monotonic,
    ) -> None:
        self._overall = asyncio.Semaphore(concurrency)
        self._host_concurrency = host_concurrency
        self._backlog = backlog
        self._failures = failures
        self._cooldown = cooldown
        self._slow_after = slow_after
        self._metrics = metrics
        self._clock = clock
        self._hosts: dict[str, _Host] = {}
        self._last_completed = float("-inf")  # by any host

    def sending(self, task: asyncio.Task[Any]) -> bool:
        """Whether the task holds a slot: its request is in flight, not waiting for its turn."""
        return any(task in host.in_flight for host in self._hosts.values())

    def is_open(self, name: str) -> bool:
        host = self._hosts.get(name)
        return host is not None and host.circuit is not _Circuit.CLOSED

    @asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[None]:
        """Hold one of the host's slots and one overall slot for one request; report its outcome
        with `succeeded` or `failed` before leaving. Raises `CallbackSkipped` when the request must
        not be made now."""
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host(name, self._host_concurrency)
        try:
            self._admit(host)
            await host.acquire()
            try:
                probe = self._may_go(host)
                token: object = asyncio.current_task() or object()
                async with self._overall:
                    host.in_flight[token] = self._clock()
                    self._metrics.in_flight.inc()
                    try:
                        yield
                    finally:
                        del host.in_flight[token]
                        host.last_completed = self._last_completed = self._clock()
                        self._metrics.in_flight.dec()
                        if probe:
                            host.probing = False
            finally:
                host.release()
        finally:
            if host.idle:
                self._hosts.pop(name, None)

    def _admit(self, host: _Host) -> None:
        """May a new event wait for a slot of the host? Sheds waiters of a degraded host too."""
        now = self._clock()
        self._tick(host, now)
        if host.circuit is _Circuit.OPEN or (host.circuit is _Circuit.HALF_OPEN and host.probing):
            raise self._circuit_open(host, now)
        if self._degraded(host, now):
            host.shed(self._backlog, functools.partial(self._backlog_full, host))
            if len(host.queue) >= self._backlog:
                raise self._backlog_full(host)

    def relieve(self) -> None:
        """Shed the waiters of degraded hosts beyond their backlog now, rather than at their next
        event: called when the deliverer holds as many events as it may, so no next event comes."""
        now = self._clock()
        for host in list(self._hosts.values()):
            self._tick(host, now)
            if self._degraded(host, now):
                host.shed(self._backlog, functools.partial(self._backlog_full, host))

    def _may_go(self, host: _Host) -> bool:
        """Whether the request that got a slot is the half-open probe; `CallbackSkipped` when the
        circuit opened while it waited, or another probe is out."""
        now = self._clock()
        self._tick(host, now)
        if host.circuit is _Circuit.OPEN or (host.circuit is _Circuit.HALF_OPEN and host.probing):
            raise self._circuit_open(host, now)
        if host.circuit is _Circuit.HALF_OPEN:
            host.probing = True
            return True
        return False

    def _tick(self, host: _Host, now: float) -> None:
        if host.circuit is _Circuit.OPEN and now >= host.opened_until:
            host.circuit = _Circuit.HALF_OPEN

    def _degraded(self, host: _Host, now: float) -> bool:
        """Failing (its circuit is not closed), or slow: its oldest request has run for `slow_after`
        seconds and none of its requests came back meanwhile, while other hosts' did. Latency, not
        queue length, tells a slow host from a busy one (a busy host keeps answering), and other
        hosts' answers tell a slow host from a busy process or network."""
        if host.circuit is not _Circuit.CLOSED:
            return True
        if not host.in_flight:
            return False
        since = now - self._slow_after
        return (
            min(host.in_flight.values()) < since
            and host.last_completed < since
            and self._last_completed >= since
        )

    def _circuit_open(self, host: _Host, now: float) -> CallbackSkipped:
        if host.circuit is _Circuit.OPEN:
            wait = host.opened_until - now
            message = f"circuit of {host.name} is open for {wait:.1f} s more"
        else:
            wait = self._cooldown
            message = f"circuit of {host.name} is half-open and its probe is in flight"
        return CallbackSkipped(message, host=host.name, reason="circuit-open", retry_after=wait)

    def _backlog_full(self, host: _Host) -> CallbackSkipped:
        message = f"{host.name} is failing or slow and already holds its backlog of {self._backlog} events"
        return CallbackSkipped(message, host=host.name, reason="backlog", retry_after=self._cooldown)

    def succeeded(self, name: str) -> None:
        host = self._hosts.get(name)
        if host is None:
            return
        host.failures = 0
        if host.circuit is not _Circuit.CLOSED:
            host.circuit = _Circuit.CLOSED
            self._report()

    def failed(self, name: str) -> None:
        host = self._hosts.get(name)
        if host is None:
            return
        host.failures += 1
        reopen = host.circuit is _Circuit.HALF_OPEN
        if reopen or (host.circuit is _Circuit.CLOSED and host.failures >= self._failures):
            host.circuit = _Circuit.OPEN
            now = self._clock()
            host.opened_until = now + self._cooldown
            host.shed(0, lambda: self._circuit_open(host, now))
            self._report()

    def _report(self) -> None:
        count = sum(1 for host in self._hosts.values() if host.circuit is not _Circuit.CLOSED)
        self._metrics.open_circuits.set(count)
