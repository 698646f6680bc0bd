from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from gateway.formats.dates import compile_date_format
from gateway.formats.templates import compile_template
from gateway.instances.model import DatesConfiguration, ResourceConfig
from gateway.polling.changes import ChangeReader, EventType, Skipped, SkipReason, classify

UTC = ZoneInfo("UTC")


def _seed_resource(*, tolerance: float) -> ResourceConfig:
    """The seed's accounts resource: id at `id`, epoch-millisecond dates under `attributes`."""
    millis = compile_date_format("milliseconds")
    return ResourceConfig(
        name="accounts",
        url=compile_template("/hubs/crm/accounts?where=fetchChanges='true'"),
        hub="crm",
        object_type="accounts",
        id_field="id",
        dates=DatesConfiguration("attributes.modifiedon", millis, UTC, "attributes.createdon", millis, UTC),
        created_check_tolerance=tolerance,
    )


@given(
    created=st.integers(min_value=0, max_value=2**41),
    delta=st.integers(min_value=-(10**6), max_value=10**6),
    tolerance=st.integers(min_value=0, max_value=10**5),
)
def test_classify_is_created_exactly_within_the_tolerance(created: int, delta: int, tolerance: int) -> None:
    expected = EventType.CREATED if abs(delta) <= tolerance else EventType.UPDATED
    assert classify(created, created + delta, tolerance) is expected


def test_classify_without_a_created_date_is_updated() -> None:
    assert classify(None, 5, 1000) is EventType.UPDATED


def test_reader_uses_the_seed_paths_and_milliseconds() -> None:
    reader = ChangeReader(_seed_resource(tolerance=0.0))
    created = reader.read({"id": "a1", "attributes": {"createdon": 1000, "modifiedon": 1000}})
    updated = reader.read({"id": "a1", "attributes": {"createdon": 1000, "modifiedon": 2000}})
    assert not isinstance(created, Skipped)
    assert not isinstance(updated, Skipped)
    assert (created.event_type, created.updated_ms) == (EventType.CREATED, 1000)
    assert (updated.event_type, updated.updated_ms) == (EventType.UPDATED, 2000)


def test_reader_skips_records_without_id_or_with_a_bad_date() -> None:
    reader = ChangeReader(_seed_resource(tolerance=0.0))
    no_id = reader.read({"attributes": {"modifiedon": 1000}})
    bad_date = reader.read({"id": "x", "attributes": {"modifiedon": "yesterday"}})
    assert isinstance(no_id, Skipped)
    assert no_id.reason is SkipReason.ID
    assert isinstance(bad_date, Skipped)
    assert bad_date.reason is SkipReason.UPDATED_DATE
    assert "attributes.modifiedon" in bad_date.detail


def test_reader_tolerance_in_seconds() -> None:
    reader = ChangeReader(_seed_resource(tolerance=2.0))
    change = reader.read({"id": "a", "attributes": {"createdon": 1000, "modifiedon": 2500}})
    assert not isinstance(change, Skipped)
    assert change.event_type is EventType.CREATED
