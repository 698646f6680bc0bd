"""Reading `subscriptions`: endpoints beside the Cloud Elements callback, each with its own filter.

    "subscriptions": [{
        "id": "crm-sync", "name": "CRM sync", "enabled": true,
        "objectTypes": ["accounts"], "eventTypes": ["UPDATED"], "changedColumns": ["name"],
        "rateLimit": 5,
        "configuration": {"event.notification.callback.url": "...", "event.notification.signature.key": "..."}
    }, {
        "id": "operators", "alerts": true,
        "configuration": {"event.notification.callback.url": "...", "event.notification.signature.key": "..."}
    }]

A subscription's `configuration` takes the Cloud Elements notification keys (callback URL, signature
key, headers, basic auth, format), read by the same code as the instance's own, so both signature
schemes and both body formats serve every subscription. An `alerts` subscription receives no change
events but the instance's delivery alerts (`gateway/delivery/alerts.py`), which are CloudEvents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.instances._connection import NOTIFICATION_KEYS, read_notification
from gateway.instances._read import (
    Report,
    as_object,
    child,
    get_bool,
    get_number,
    get_string,
    json_type,
    warn_unknown,
)
from gateway.instances.model import EVENT_TYPES, Subscription

SUBSCRIPTION_KEYS = (
    "id",
    "name",
    "enabled",
    "objectTypes",
    "eventTypes",
    "changedColumns",
    "rateLimit",
    "alerts",
    "configuration",
)
_FILTERS = ("objectTypes", "eventTypes", "changedColumns")
_FORMAT = "event.notification.format"
RATE_LIMIT_RANGE = (0.01, 10_000.0)  # requests per second
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALLBACK_URL = "event.notification.callback.url"
# What a subscription's configuration cannot hold: it is only about notifications.
_NOT_FOR_SUBSCRIPTIONS = ("event.notification.enabled",)


def read_subscriptions(report: Report, root: Mapping[str, Any]) -> tuple[Subscription, ...]:
    value = root.get("subscriptions", [])
    if not isinstance(value, list):
        report.error("$.subscriptions", f"must be an array of subscriptions, got {json_type(value)}")
        return ()
    subscriptions: list[Subscription] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        path = child("$.subscriptions", index)
        subscription = _read_subscription(report, item, path)
        if subscription is None:
            continue
        if subscription.id in seen:
            report.error(child(path, "id"), f"repeats the id {subscription.id!r}")
            continue
        seen.add(subscription.id)
        subscriptions.append(subscription)
    return tuple(subscriptions)


def _read_subscription(report: Report, value: object, path: str) -> Subscription | None:
    spec = as_object(report, value, path)
    if spec is None:
        return None
    warn_unknown(report, spec, SUBSCRIPTION_KEYS, path)
    subscription_id = get_string(report, spec, "id", path, required=True)
    if subscription_id is not None and not _ID.fullmatch(subscription_id):
        report.error(
            child(path, "id"), "must be 1 to 64 letters, digits, '.', '_' or '-', starting alphanumeric"
        )
        subscription_id = None
    name = get_string(report, spec, "name", path)
    enabled = get_bool(report, spec, "enabled", path, default=True)
    object_types = _names(report, spec, "objectTypes", path, pattern=_NAME)
    event_types = _event_types(report, spec, path)
    changed_columns = _names(report, spec, "changedColumns", path, pattern=_NAME)
    rate_limit = _rate_limit(report, spec, path)
    alerts = get_bool(report, spec, "alerts", path, default=False)
    if "configuration" not in spec:
        report.error(child(path, "configuration"), "is required")
        return None
    config_path = child(path, "configuration")
    config = as_object(report, spec["configuration"], config_path)
    if config is None:
        return None
    known = tuple(key for key in NOTIFICATION_KEYS if key not in _NOT_FOR_SUBSCRIPTIONS)
    warn_unknown(report, config, known, config_path)
    if _CALLBACK_URL not in config:
        report.error(child(config_path, _CALLBACK_URL), "is required")
    notification = read_notification(report, config, config_path, enabled=enabled)
    if alerts:
        _check_alerts_only(report, spec, config, path)
        notification = replace(notification, format="cloudevents")
    if subscription_id is None:
        return None
    return Subscription(
        id=subscription_id,
        name=name or subscription_id,
        enabled=enabled,
        object_types=object_types,
        event_types=event_types,
        changed_columns=changed_columns,
        rate_limit=rate_limit,
        notification=notification,
        alerts=alerts,
    )


def _check_alerts_only(report: Report, spec: Mapping[str, Any], config: Mapping[str, Any], path: str) -> None:
    """An alerts subscription takes no filter, and no body format but CloudEvents."""
    for key in _FILTERS:
        if key in spec:
            message = "an alerts subscription receives alerts, not change events: leave it out"
            report.error(child(path, key), message)
    if config.get(_FORMAT, "cloudevents") != "cloudevents":
        message = "alerts are CloudEvents: leave it out or set cloudevents"
        report.error(child(child(path, "configuration"), _FORMAT), message)


def _rate_limit(report: Report, spec: Mapping[str, Any], path: str) -> float | None:
    """Requests per second; absent or null: unlimited."""
    if spec.get("rateLimit") is None:
        return None
    low, high = RATE_LIMIT_RANGE
    return get_number(
        report,
        spec,
        "rateLimit",
        path,
        default=high,
        minimum=low,
        maximum=high,
        message=f"must be a number of requests per second from {low:g} to {high:g}, or null for no limit",
    )


def _names(
    report: Report, spec: Mapping[str, Any], key: str, path: str, *, pattern: re.Pattern[str]
) -> frozenset[str] | None:
    """A filter's list of names; absent means no filter on that attribute."""
    if key not in spec:
        return None
    path = child(path, key)
    names = spec[key]
    if not isinstance(names, list) or not names:
        report.error(path, "must be a non-empty array of names; leave it out to match every one")
        return None
    valid = True
    for index, name in enumerate(names):
        if not isinstance(name, str) or not pattern.fullmatch(name):
            report.error(child(path, index), "must be a name of letters, digits and '_'")
            valid = False
    return frozenset(names) if valid else None


def _event_types(report: Report, spec: Mapping[str, Any], path: str) -> frozenset[str] | None:
    if "eventTypes" not in spec:
        return None
    path = child(path, "eventTypes")
    types = spec["eventTypes"]
    if not isinstance(types, list) or not types:
        report.error(path, "must be a non-empty array of CREATED, UPDATED or DELETED")
        return None
    valid = True
    for index, event_type in enumerate(types):
        if event_type not in EVENT_TYPES:
            report.error(child(path, index), "must be CREATED, UPDATED or DELETED")
            valid = False
    return frozenset(types) if valid else None
