"""Per-host limits, the bounded backlog of a slow host, and the circuit breaker, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from gateway.delivery.host_slots import HostSlots
from gateway.errors import CallbackSkipped
from gateway.metrics import DeliveryMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _host_slots(clock: Clock, **overrides: float) -> HostSlots:
    options: dict[str, float] = {
        "concurrency": 100,
        "host_concurrency": 2,
        "backlog": 3,
        "failures": 3,
        "cooldown": 30.0,
        "slow_after": 0.5,
    }
    options.update(overrides)
    return HostSlots(
        concurrency=int(options["concurrency"]),
        host_concurrency=int(options["host_concurrency"]),
        backlog=int(options["backlog"]),
        failures=int(options["failures"]),
        cooldown=options["cooldown"],
        slow_after=options["slow_after"],
        metrics=DeliveryMetrics(CollectorRegistry()),
        clock=clock,
    )


async def _fail(host_slots: HostSlots, host: str) -> None:
    async with host_slots.slot(host):
        host_slots.failed(host)


async def test_the_breaker_opens_probes_once_and_closes() -> None:
    clock = Clock()
    host_slots = _host_slots(clock)
    for _ in range(3):
        await _fail(host_slots, "a:80")
    assert host_slots.is_open("a:80")
    with pytest.raises(CallbackSkipped) as skipped:
        async with host_slots.slot("a:80"):
            pass
    assert (skipped.value.reason, skipped.value.retry_after) == ("circuit-open", 30.0)

    clock.now += 30
    probe_started = asyncio.Event()
    finish_probe = asyncio.Event()

    async def probe() -> None:
        async with host_slots.slot("a:80"):
            probe_started.set()
            await finish_probe.wait()
            host_slots.succeeded("a:80")

    task = asyncio.create_task(probe())
    await probe_started.wait()
    with pytest.raises(CallbackSkipped, match="probe is in flight"):
        async with host_slots.slot("a:80"):
            pass
    finish_probe.set()
    await task
    assert not host_slots.is_open("a:80")
    async with host_slots.slot("a:80"):
        host_slots.succeeded("a:80")


async def test_a_failed_probe_opens_the_circuit_again() -> None:
    clock = Clock()
    host_slots = _host_slots(clock)
    for _ in range(3):
        await _fail(host_slots, "a:80")
    clock.now += 30
    await _fail(host_slots, "a:80")
    with pytest.raises(CallbackSkipped) as skipped:
        async with host_slots.slot("a:80"):
            pass
    assert skipped.value.retry_after == 30.0


async def test_other_hosts_are_not_affected_by_an_open_circuit() -> None:
    host_slots = _host_slots(Clock())
    for _ in range(3):
        await _fail(host_slots, "a:80")
    async with host_slots.slot("b:80"):
        host_slots.succeeded("b:80")


async def test_waiting_events_of_a_host_whose_circuit_opens_are_shed() -> None:
    clock = Clock()
    host_slots = _host_slots(clock, failures=1)
    release = asyncio.Event()

    async def hold_and_fail() -> None:
        async with host_slots.slot("a:80"):
            await release.wait()
            host_slots.failed("a:80")

    holders = [asyncio.create_task(hold_and_fail()) for _ in range(2)]
    await asyncio.sleep(0)

    async def wait_in_line() -> None:
        async with host_slots.slot("a:80"):
            pass

    waiter = asyncio.create_task(wait_in_line())
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*holders)
    with pytest.raises(CallbackSkipped, match="circuit"):
        await waiter


async def test_a_slow_host_keeps_its_backlog_and_sheds_the_rest_while_others_answer() -> None:
    clock = Clock()
    host_slots = _host_slots(clock, backlog=2)
    hang = asyncio.Event()

    async def request(host: str) -> None:
        async with host_slots.slot(host):
            await hang.wait()

    in_flight = [asyncio.create_task(request("slow:80")) for _ in range(2)]
    waiting = [asyncio.create_task(request("slow:80")) for _ in range(4)]
    await asyncio.sleep(0)
    # Busy, not slow, as long as nothing is old: more may wait.
    extra = asyncio.create_task(request("slow:80"))
    await asyncio.sleep(0)
    assert not extra.done()

    clock.now += 1.0  # its requests are now old, and another host answers
    async with host_slots.slot("fast:80"):
        host_slots.succeeded("fast:80")
    with pytest.raises(CallbackSkipped) as skipped:
        async with host_slots.slot("slow:80"):
            pass
    assert skipped.value.reason == "backlog"
    await asyncio.sleep(0)
    # The newest waiters were shed; the oldest two keep their turn.
    shed = [task for task in [*waiting, extra] if task.done()]
    assert len(shed) == 3
    assert all(isinstance(task.exception(), CallbackSkipped) for task in shed)
    assert not any(task.done() for task in waiting[:2])
    hang.set()
    await asyncio.gather(*in_flight, *waiting[:2])


async def test_a_lone_slow_host_is_not_shed_when_nobody_else_answers() -> None:
    """With no other host answering, slowness may be the process's own: it only waits."""
    clock = Clock()
    host_slots = _host_slots(clock, backlog=1)
    hang = asyncio.Event()

    async def request() -> None:
        async with host_slots.slot("a:80"):
            await hang.wait()

    tasks = [asyncio.create_task(request()) for _ in range(6)]
    await asyncio.sleep(0)
    clock.now += 5
    host_slots.relieve()
    late = asyncio.create_task(request())
    await asyncio.sleep(0)
    assert not any(task.done() for task in [*tasks, late])
    hang.set()
    await asyncio.gather(*tasks, late)


async def test_slots_are_granted_in_order() -> None:
    host_slots = _host_slots(Clock(), host_concurrency=1)
    order: list[int] = []
    gate = asyncio.Event()

    async def request(n: int) -> None:
        async with host_slots.slot("a:80"):
            order.append(n)
            await gate.wait()

    tasks = [asyncio.create_task(request(n)) for n in range(5)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_a_waiter_cancelled_just_before_the_slot_is_released_leaves_quietly() -> None:
    """As on a rebalance: the revoked partitions' waiting events are cancelled while a request of the
    host finishes, and the release drops the cancelled waiter before its task runs again."""
    host_slots = _host_slots(Clock(), host_concurrency=1)
    gate = asyncio.Event()
    order: list[int] = []

    async def request(n: int) -> None:
        async with host_slots.slot("a:80"):
            order.append(n)
            if n == 0:
                await gate.wait()

    holder = asyncio.create_task(request(0))
    waiters = [asyncio.create_task(request(n)) for n in (1, 2, 3)]
    await asyncio.sleep(0)  # the holder has the slot, the others wait in order
    gate.set()  # the holder runs first, and releases...
    waiters[0].cancel()  # ...while the first waiter's cancellation is still pending
    results = await asyncio.gather(holder, *waiters, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError), results
    assert order == [0, 2, 3]
    async with asyncio.timeout(1), host_slots.slot("a:80"):  # the slot is free again
        pass
