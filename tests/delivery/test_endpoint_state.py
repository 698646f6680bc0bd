"""Endpoint state: what one replica writes to the delivery-state topic is what another reads back,
in whatever order the records land; a failing streak keeps its first failure's time while failures
keep coming, and starts over after a quiet spell, a delivery or a change of the instance; the
gauges count only states at their instance's current revision; and markers written before outages
were counted (without `cause`) still read as a 410's."""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.delivery.endpoint_state import Disabled, EndpointStates, RevisionLookup, Streak
from gateway.delivery.outputs import Output
from gateway.metrics import DeliveryMetrics
from tests.delivery._support import sample

ENDPOINTS = ("inst-1", "inst-1/crm-sync")
REVISIONS = ("updated:1", "updated:2")
QUIET_MS = 1000  # a streak with no failed attempt for this long is over
Op = tuple[Literal["failed", "succeeded", "gone", "outage", "lift"], str, str, int]


def _states(
    registry: CollectorRegistry | None = None,
    revisions: RevisionLookup | None = None,
    clock: list[float] | None = None,
) -> EndpointStates:
    now = clock if clock is not None else [0.0]
    return EndpointStates(
        topic="gw.delivery-state",
        partitions=2,
        metrics=DeliveryMetrics(registry or CollectorRegistry()),
        quiet_after=QUIET_MS / 1000,
        revisions=revisions,
        clock=lambda: now[0],
    )


def _view(states: EndpointStates) -> dict[str, tuple[Streak | None, Disabled | None]]:
    return {e: (states.streak(e), states.disabled(e)) for e in ENDPOINTS}


def _apply(writer: EndpointStates, op: Op) -> tuple[Output, ...]:
    kind, endpoint, revision, at_ms = op
    if kind == "failed":
        return writer.failed(endpoint, at_ms, revision)
    if kind == "succeeded":
        return writer.succeeded(endpoint, at_ms)
    if kind == "lift":
        return writer.lift(endpoint, revision, at_ms)
    cause: Literal["gone", "outage"] = kind
    return (writer.disable(endpoint, Disabled(cause, revision, 500, at_ms)),)


async def _replay(ops: list[Op]) -> None:
    writer, reader = _states(), _states()
    for op in ops:
        kind, endpoint, revision, at_ms = op
        before, disabled = writer.streak(endpoint), writer.disabled(endpoint)
        outputs = _apply(writer, op)
        after = writer.streak(endpoint)
        if kind == "failed":
            if disabled is not None:  # in flight when its endpoint was disabled: writes nothing
                assert outputs == ()
                assert (after, writer.disabled(endpoint)) == (before, disabled)
            elif before is not None and before.revision == revision and at_ms - before.failed_ms <= QUIET_MS:
                assert after is not None
                assert after.since_ms == before.since_ms  # a streak keeps its start
            else:
                assert after == Streak(at_ms, at_ms, revision)
        elif kind == "succeeded":
            assert after is None
        elif kind == "lift":
            marker = writer.disabled(endpoint)
            assert marker is None or marker.revision == revision
            assert (outputs == ()) == (disabled is None or disabled.revision == revision)
        else:
            assert after is None
        for output in outputs:
            assert output.topic == "gw.delivery-state"
            assert output.key is not None
            await reader.apply_record(output.key.decode(), output.value)
        assert _view(reader) == _view(writer)


# Attempts in time order, each at least 1 ms after the one before, some after a quiet spell.
operations = st.lists(
    st.tuples(
        st.sampled_from(["failed", "succeeded", "gone", "outage", "lift"]),
        st.sampled_from(ENDPOINTS),
        st.sampled_from(REVISIONS),
        st.sampled_from([1, 100, 300, 800, 1200]),
    ),
    max_size=30,
).map(
    lambda ops: [
        (kind, endpoint, revision, sum(gap for *_, gap in ops[: n + 1]))
        for n, (kind, endpoint, revision, _gap) in enumerate(ops)
    ]
)


@given(operations)
def test_what_one_replica_writes_another_reads_back_the_same(ops: list[Op]) -> None:
    asyncio.run(_replay(ops))


async def _replay_shuffled(ops: list[Op], order: list[int]) -> None:
    writer, reader = _states(), _states()
    outputs = [output for op in ops for output in _apply(writer, op)]
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


@given(st.lists(st.integers(min_value=0, max_value=2 * QUIET_MS), min_size=1, max_size=40))
def test_a_streak_lasts_while_failures_keep_coming_and_starts_over_after_a_quiet_spell(
    gaps: list[int],
) -> None:
    states = _states()
    at_ms, since_ms, written_ms = 0, None, None
    for gap in gaps:
        at_ms += gap
        outputs = states.failed("inst-1", at_ms, "updated:1")
        streak = states.streak("inst-1")
        assert streak is not None
        if since_ms is None or gap > QUIET_MS:
            assert streak.since_ms == at_ms
        elif gap <= QUIET_MS * 3 // 4:
            assert streak.since_ms == since_ms
        # Its record knows the last failure within a quarter of the quiet spell, at one record for
        # every such quarter at most.
        assert at_ms - streak.failed_ms <= QUIET_MS // 4
        if outputs:
            assert written_ms is None or at_ms - written_ms > QUIET_MS // 4
            written_ms = at_ms
        since_ms = streak.since_ms


def test_the_gauges_count_the_states_of_current_instances_and_recent_failures() -> None:
    registry, clock = CollectorRegistry(), [10.0]
    revisions = {"inst-1": "1", "inst-2": "1"}
    states = _states(registry, revisions.get, clock)
    states.disable("inst-1/crm-sync", Disabled("gone", "updated:1", 410, 10_000))
    states.disable("inst-2", Disabled("outage", "updated:1", 500, 10_000))
    states.failed("inst-1", 10_000, "updated:1")
    states.failed("inst-2/ops", 10_000, "updated:1")
    assert sample(registry, "gateway_delivery_disabled_instances") == 2
    assert sample(registry, "gateway_delivery_failing_endpoints") == 2

    revisions["inst-1"] = "2"  # a PATCH: its marker and streak are no longer current
    del revisions["inst-2"]  # a DELETE
    assert sample(registry, "gateway_delivery_disabled_instances") == 0
    assert sample(registry, "gateway_delivery_failing_endpoints") == 0

    states.failed("inst-1", 10_500, "updated:2")
    assert sample(registry, "gateway_delivery_failing_endpoints") == 1
    clock[0] = 10.5 + QUIET_MS / 1000 + 0.001  # quiet since: its next failure starts over
    assert sample(registry, "gateway_delivery_failing_endpoints") == 0
    assert states.describe("inst-1", "updated:2") == {"state": "delivering"}


async def test_a_marker_without_a_cause_is_a_410s_and_a_malformed_record_is_ignored() -> None:
    states = _states()
    old = {"disabled": True, "revision": "updated:1", "status": 410, "atMs": 5}
    await states.apply_record("inst-1", orjson.dumps(old))
    assert states.disabled("inst-1") == Disabled("gone", "updated:1", 410, 5)
    assert states.disabled_at("inst-1", "updated:1") == Disabled("gone", "updated:1", 410, 5)
    assert states.disabled_at("inst-1", "updated:2") is None
    await states.apply_record("inst-1/crm-sync", b'{"failingSince": "soon"}')
    assert states.streak("inst-1/crm-sync") is None
    streak = {"failingSince": 7, "failedAt": 9, "revision": "updated:1"}
    await states.apply_record("inst-1/crm-sync", orjson.dumps(streak))
    assert states.streak("inst-1/crm-sync") == Streak(7, 9, "updated:1")
    await states.apply_record("inst-1/crm-sync", b'{"deliveredAt": 8}')  # landed late
    assert states.streak("inst-1/crm-sync") == Streak(7, 9, "updated:1")
    await states.apply_record("inst-1/crm-sync", None)
    assert states.streak("inst-1/crm-sync") is None
