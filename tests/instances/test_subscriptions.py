"""Which change events reach a subscription: its object types, event types and changed columns."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.instances import Notification, Subscription
from gateway.instances.model import EVENT_TYPES

_NAMES = st.sampled_from(["accounts", "contacts", "name", "telephone1", "description", "statecode"])
_FILTER = st.none() | st.frozensets(_NAMES, min_size=1)


def _subscription(
    object_types: frozenset[str] | None,
    event_types: frozenset[str] | None,
    changed_columns: frozenset[str] | None,
    *,
    enabled: bool = True,
    alerts: bool = False,
) -> Subscription:
    return Subscription(
        id="s",
        name="s",
        enabled=enabled,
        object_types=object_types,
        event_types=event_types,
        changed_columns=changed_columns,
        rate_limit=None,
        notification=Notification(
            enabled=enabled, callback_url="https://hooks.example.com/", signature_key=None
        ),
        alerts=alerts,
    )


@given(
    object_types=_FILTER,
    event_types=st.none() | st.frozensets(st.sampled_from(EVENT_TYPES), min_size=1),
    changed_columns=_FILTER,
    object_type=_NAMES,
    event_type=st.sampled_from(EVENT_TYPES),
    changed=st.none() | st.lists(_NAMES, unique=True),
    enabled=st.booleans(),
    alerts=st.booleans(),
)
def test_an_event_reaches_a_subscription_exactly_when_every_filter_lets_it(
    object_types: frozenset[str] | None,
    event_types: frozenset[str] | None,
    changed_columns: frozenset[str] | None,
    object_type: str,
    event_type: str,
    changed: list[str] | None,
    enabled: bool,
    alerts: bool,
) -> None:
    subscription = _subscription(object_types, event_types, changed_columns, enabled=enabled, alerts=alerts)
    expected = (
        enabled
        and not alerts  # an alerts subscription receives alerts only
        and (object_types is None or object_type in object_types)
        and (event_types is None or event_type in event_types)
        and (
            changed_columns is None
            or event_type != "UPDATED"
            or changed is None
            or any(column in changed_columns for column in changed)
        )
    )
    assert subscription.wants(object_type, event_type, changed) == expected


def test_an_update_of_other_columns_does_not_reach_a_changed_columns_subscription() -> None:
    subscription = _subscription(None, None, frozenset({"name"}))
    assert not subscription.wants("accounts", "UPDATED", ["description"])
    assert subscription.wants("accounts", "UPDATED", ["description", "name"])
    assert subscription.wants("accounts", "CREATED", [])
    assert subscription.wants("accounts", "UPDATED", None)
