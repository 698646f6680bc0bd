"""The delivery history's paging and filters, as pure logic: every page is newest first, no record is
on two pages, none is skipped, and a cursor this listing did not give is refused."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.history import STATUSES, DeliveryRecord, Status, paginate


def _record(event_id: str, at_ms: int, status: Status) -> DeliveryRecord:
    return DeliveryRecord(
        instance_id="inst-1",
        event_id=event_id,
        status=status,
        at_ms=at_ms,
        attempts=1,
        next_retry_ms=None,
        event_type="crm.accounts.updated",
        subject="obj",
        history=(),
    )


_records = st.lists(
    st.builds(
        _record,
        st.text("abcdef0123", min_size=1, max_size=6),
        st.integers(0, 20),  # few distinct times: ties must be broken by the event id
        st.sampled_from(STATUSES),
    ),
    max_size=40,
    unique_by=lambda record: record.event_id,
)


@given(
    records=_records,
    limit=st.integers(1, 7),
    statuses=st.sets(st.sampled_from(STATUSES), min_size=1),
    since=st.none() | st.integers(0, 20),
)
def test_paging_walks_every_chosen_record_once_newest_first(
    records: list[DeliveryRecord], limit: int, statuses: set[Status], since: int | None
) -> None:
    wanted = frozenset(statuses)
    seen: list[DeliveryRecord] = []
    cursor = None
    for _ in range(len(records) + 1):
        page = paginate(records, limit=limit, statuses=wanted, since_ms=since, cursor=cursor)
        assert len(page.records) <= limit
        seen += page.records
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [r for r in records if r.status in wanted and (since is None or r.at_ms >= since)]
    assert sorted(r.event_id for r in seen) == sorted(r.event_id for r in expected)
    assert [r.at_ms for r in seen] == sorted((r.at_ms for r in seen), reverse=True)


def test_a_full_last_page_says_there_is_no_next() -> None:
    records = [_record("a", 2, "delivered"), _record("b", 1, "delivered")]
    page = paginate(records, limit=2)
    assert [r.event_id for r in page.records] == ["a", "b"]
    assert page.next_cursor is None


@pytest.mark.parametrize("cursor", ["", "!!", "WzEsMl0", "bm90IGpzb24"])
def test_a_cursor_this_listing_did_not_give_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        paginate([_record("a", 1, "failed")], limit=1, cursor=cursor)


def test_a_record_reads_back_as_written() -> None:
    record = _record("a", 5, "retrying")
    out = record.output("gw.deliveries", 4)
    assert DeliveryRecord.from_json(orjson.loads(out.value or b"")) == record
    assert out.key == b"inst-1/a"
