"""Endpoint state: what one replica writes to the delivery-state topic is what another reads back,
in whatever order the records land, a failing streak keeps its first failure's time until a
delivery ends it, and markers written
before outages were counted (without `cause`) still read as a 410's."""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.delivery.endpoint_state import Disabled, EndpointStates
from gateway.metrics import DeliveryMetrics

ENDPOINTS = ("inst-1", "inst-1/crm-sync")
Op = tuple[Literal["failed", "succeeded", "gone", "outage", "lift"], str, int]


def _states() -> EndpointStates:
    return EndpointStates(
        topic="gw.delivery-state", partitions=2, metrics=DeliveryMetrics(CollectorRegistry())
    )


def _view(states: EndpointStates) -> dict[str, tuple[int | None, Disabled | None]]:
    return {e: (states.failing_since(e), states.disabled(e)) for e in ENDPOINTS}


async def _replay(ops: list[Op]) -> None:
    writer, reader = _states(), _states()
    for kind, endpoint, at_ms in ops:
        before = writer.failing_since(endpoint)
        disabled = writer.disabled(endpoint)
        if kind == "failed":
            outputs = writer.failed(endpoint, at_ms)
            if before is not None or disabled is not None:
                assert outputs == ()
                assert writer.failing_since(endpoint) == before  # a streak keeps its start
                assert writer.disabled(endpoint) == disabled  # and a marker stays
        elif kind == "succeeded":
            outputs = writer.succeeded(endpoint, at_ms)
            assert writer.failing_since(endpoint) is None
        elif kind == "lift":
            outputs = writer.lift(endpoint, at_ms)
            assert writer.disabled(endpoint) is None
        else:
            cause: Literal["gone", "outage"] = kind
            outputs = (writer.disable(endpoint, Disabled(cause, "updated:1", 500, at_ms)),)
            assert writer.failing_since(endpoint) is None
        for output in outputs:
            assert output.topic == "gw.delivery-state"
            assert output.key is not None
            await reader.apply_record(output.key.decode(), output.value)
        assert _view(reader) == _view(writer)


# Attempts in time order, each at least 31 ms after the one before.
operations = st.lists(
    st.tuples(
        st.sampled_from(["failed", "succeeded", "gone", "outage", "lift"]),
        st.sampled_from(ENDPOINTS),
        st.integers(min_value=0, max_value=30),
    ),
    max_size=30,
).map(lambda ops: [(kind, endpoint, at + n * 31) for n, (kind, endpoint, at) in enumerate(ops)])


@given(operations)
def test_what_one_replica_writes_another_reads_back_the_same(ops: list[Op]) -> None:
    asyncio.run(_replay(ops))


async def _replay_shuffled(ops: list[Op], order: list[int]) -> None:
    writer, reader = _states(), _states()
    outputs = []
    for kind, endpoint, at_ms in ops:
        if kind == "failed":
            outputs.extend(writer.failed(endpoint, at_ms))
        elif kind == "succeeded":
            outputs.extend(writer.succeeded(endpoint, at_ms))
        elif kind == "lift":
            outputs.extend(writer.lift(endpoint, at_ms))
        else:
            cause: Literal["gone", "outage"] = kind
            outputs.append(writer.disable(endpoint, Disabled(cause, "updated:1", 500, at_ms)))
    final = _view(writer)
    for index in sorted(range(len(outputs)), key=lambda i: order[i % len(order)] if order else 0):
        output = outputs[index]
        assert output.key is not None
        await reader.apply_record(output.key.decode(), output.value)
        await writer.apply_record(output.key.decode(), output.value)  # its own records, read back late
    assert _view(reader) == final
    assert _view(writer) == final


@given(operations, st.lists(st.integers(), max_size=40))
def test_records_whose_commits_land_in_any_order_end_in_the_newest_state(
    ops: list[Op], order: list[int]
) -> None:
    """One endpoint's records go with the commits of different partitions, which land in any order."""
    asyncio.run(_replay_shuffled(ops, order))


async def test_a_marker_without_a_cause_is_a_410s_and_a_malformed_record_is_ignored() -> None:
    states = _states()
    old = {"disabled": True, "revision": "updated:1", "status": 410, "atMs": 5}
    await states.apply_record("inst-1", orjson.dumps(old))
    assert states.disabled("inst-1") == Disabled("gone", "updated:1", 410, 5)
    assert states.status("inst-1", "updated:1") == "disabled"
    assert states.status("inst-1", "updated:2") == "lifted"
    await states.apply_record("inst-1/crm-sync", b'{"failingSince": "soon"}')
    assert states.failing_since("inst-1/crm-sync") is None
    await states.apply_record("inst-1/crm-sync", b'{"failingSince": 7}')
    assert states.failing_since("inst-1/crm-sync") == 7
    await states.apply_record("inst-1/crm-sync", b'{"deliveredAt": 6}')  # landed late
    assert states.failing_since("inst-1/crm-sync") == 7
    await states.apply_record("inst-1/crm-sync", None)
    assert states.failing_since("inst-1/crm-sync") is None
