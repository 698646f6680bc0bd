"""The retry policy, the parked-record headers, the offset windows and the topic layout."""

from __future__ import annotations

import random

import pytest
from aiokafka import TopicPartition

from gateway.delivery.offsets import PartitionWindow
from gateway.delivery.outputs import Output
from gateway.delivery.retry import AttemptRecord, Origin, Parked, RetryPolicy, event_headers, read_parked
from gateway.delivery.topic_names import DeliveryTopics, tier_name
from gateway.errors import EventDecodeError
from gateway.settings import DEFAULT_RETRY_SCHEDULE

POLICY = RetryPolicy(
    schedule=DEFAULT_RETRY_SCHEDULE, inline_max=1.0, retry_after_max=300.0, breaker_cooldown=30.0
)


def test_the_default_schedule_parks_all_but_the_immediate_retry_in_its_own_tier() -> None:
    assert POLICY.max_attempts == 11
    assert POLICY.tiers == (
        0.0,
        5.0,
        30.0,
        300.0,
        1800.0,
        7200.0,
        18000.0,
        36000.0,
        50400.0,
        72000.0,
        86400.0,
    )
    rng = random.Random(7)
    first = POLICY.next(1, retry_after=None, may_wait_inline=True, rng=rng)
    assert first is not None
    assert (first.inline, first.delay) == (True, 0.0)
    for attempts, nominal in enumerate(DEFAULT_RETRY_SCHEDULE[1:], start=2):
        retry = POLICY.next(attempts, retry_after=None, may_wait_inline=True, rng=rng)
        assert retry is not None
        assert not retry.inline
        assert retry.tier == nominal
        assert 0.8 * nominal <= retry.delay <= 1.2 * nominal
    assert POLICY.next(11, retry_after=None, may_wait_inline=True, rng=rng) is None


def test_retry_after_wins_when_longer_and_is_clamped() -> None:
    rng = random.Random(1)
    retry = POLICY.next(1, retry_after=120.0, may_wait_inline=True, rng=rng)
    assert retry is not None
    assert (retry.delay, retry.tier, retry.inline) == (120.0, 300.0, False)
    clamped = POLICY.next(1, retry_after=10_000.0, may_wait_inline=True, rng=rng)
    assert clamped is not None
    assert (clamped.delay, clamped.tier) == (300.0, 300.0)


def test_an_open_circuit_never_waits_in_memory() -> None:
    retry = POLICY.next(1, retry_after=12.0, may_wait_inline=False, rng=random.Random(1))
    assert retry is not None
    assert (retry.inline, retry.tier) == (False, 30.0)


def test_parked_headers_round_trip_and_keep_the_event_headers_apart() -> None:
    history = (
        AttemptRecord(1, 1_700_000_000_000, "failed", 500, "a:80 answered 500", 12),
        AttemptRecord(2, 1_700_000_001_000, "timeout", None, "no answer from a:80 within 15 s", None),
    )
    parked = Parked(2, 1_700_000_005_000, Origin("events.crm.accounts", 1, 42), history)
    event = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    headers = event + parked.headers()
    assert read_parked(headers) == parked
    assert event_headers(headers) == event
    assert dict(headers)["gw-last-error"] == b"no answer from a:80 within 15 s"
    with pytest.raises(EventDecodeError):
        read_parked(event)


def test_a_window_commits_only_the_finished_prefix_with_its_outputs() -> None:
    window = PartitionWindow()
    for offset in (10, 11, 13, 14):  # 12: a transaction marker
        window.add(offset)
    parked = Output(topic="retry", key=b"k", value=b"v")
    window.finish(11, (parked,))
    assert window.ready() is None  # 10 is still in flight
    window.finish(10)
    window.finish(14)
    assert window.ready() == (12, 2, [parked])
    window.confirm(2)
    assert window.ready() is None
    window.finish(13)
    assert window.ready() == (15, 2, [])
    assert window.unfinished == 0


def test_the_pattern_matches_event_topics_and_retry_tiers_only() -> None:
    import re

    topics = DeliveryTopics.build(topic_prefix="events", state_prefix="events.gw", tiers=(5.0, 0.2))
    pattern = re.compile(topics.pattern)
    assert pattern.match("events.crm.accounts")
    assert pattern.match("events.gw.retry.5s")
    assert pattern.match("events.gw.retry.0.2s")
    for other in (
        "events.gw.instances",
        "events.gw.dead-letters",
        "events.gw.delivery-state",
        "eventsx.crm.a",
    ):
        assert not pattern.match(other), other
    assert topics.tier_of("events.gw.retry.0.2s") == 0.2
    assert topics.tier_of("events.crm.accounts") is None
    assert [tier_name(t) for t in topics.tiers] == ["0s", "0.2s", "5s"]
    assert tier_name(86400.0) == "86400s"
    assert TopicPartition("events.gw.retry.0s", 0).topic == topics.replay
