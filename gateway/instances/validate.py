"""Validating an instance body (POST /instances) and merging a PATCH into a stored one.

Every problem is collected before anything is raised. A problem's path is a JSON path: `$` is
the body; a key that is an identifier (`[A-Za-z_][A-Za-z0-9_]*`) follows a dot, any other key
is quoted in brackets with `\\` and `'` escaped; array items are `[index]`. For example
`$.configuration['event.poller.configuration'].accounts.idField` or `$.tags[0]`. A JSON
document given as a string (as Cloud Elements callers send `event.poller.configuration`) is
addressed as if it were the object it holds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from gateway.errors import InstanceValidationError, Problem
from gateway.instances._connection import NOTIFICATION_KEYS, SOURCE_KEYS, read_notification, read_source
from gateway.instances._read import (
    Report,
    as_object,
    child,
    decode_object,
    get_bool,
    get_number,
    get_string,
    get_zone,
    json_type,
    length_problem,
    warn_unknown,
)
from gateway.instances._resources import read_resources
from gateway.instances._subscriptions import read_subscriptions
from gateway.instances.model import Instance

# Element keys accepted in `element.key`, each mapped to its canonical key.
ELEMENT_KEYS = {"dynamicscrmadfs": "dynamicscrmadfs", "dynamicscrm": "dynamicscrmadfs"}

_POLLER = "event.poller.configuration"
_HEADERS = "event.notification.callback.headers"
# `id`, `createdDate` and `updatedDate` are set by the gateway on stored bodies; a body's own are ignored.
_BODY_KEYS = ("element", "name", "tags", "configuration", "subscriptions", "id", "createdDate", "updatedDate")
_CONFIGURATION_KEYS = (
    *SOURCE_KEYS,
    *NOTIFICATION_KEYS,
    "event.poller.refresh_interval",
    "event.poller.timezone",
    _POLLER,
)
_UTC = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class ValidatedInstance:
    instance: Instance
    warnings: tuple[Problem, ...]


def validate_instance(body: object, *, instance_id: str | None = None) -> ValidatedInstance:
    """The instance a body describes, or InstanceValidationError listing every problem in it.

    Without `instance_id` the instance gets a new random id.
    """
    report = Report()
    instance = _read_body(report, body, str(uuid.uuid4()) if instance_id is None else instance_id)
    if report.errors or instance is None:
        raise InstanceValidationError(report.errors)
    return ValidatedInstance(instance, tuple(report.warnings))


def apply_patch(current_body: Mapping[str, Any], patch: object) -> dict[str, Any]:
    """`current_body` with a JSON merge patch (RFC 7396) applied; validate the result before storing it.

    A key given as a string of JSON in the stored body (`event.poller.configuration`) is decoded
    first when the patch gives it as an object, so the patch merges into it instead of replacing it.
    """
    if not isinstance(patch, Mapping):
        raise InstanceValidationError([Problem("$", f"must be an object, got {json_type(patch)}")])
    current = dict(current_body)
    configuration, configuration_patch = current.get("configuration"), patch.get("configuration")
    if isinstance(configuration, Mapping) and isinstance(configuration_patch, Mapping):
        current["configuration"] = _decode_embedded(configuration, configuration_patch)
    merged: dict[str, Any] = _merge(current, patch)
    return merged


def _merge(target: object, patch: object) -> Any:
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _decode_embedded(configuration: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    decoded = dict(configuration)
    for key in (_POLLER, _HEADERS):
        if isinstance(decoded.get(key), str) and isinstance(patch.get(key), Mapping):
            try:
                value = json.loads(decoded[key])
            except (ValueError, RecursionError):
                continue  # the patch's object replaces the broken string
            decoded[key] = value
    return decoded


def _read_body(report: Report, body: object, instance_id: str) -> Instance | None:
    root = as_object(report, body, "$")
    if root is None:
        return None
    warn_unknown(report, root, _BODY_KEYS, "$")
    element_key = _read_element_key(report, root)
    name = get_string(report, root, "name", "$", required=True)
    tags = _read_tags(report, root)
    if "configuration" not in root:
        report.error("$.configuration", "is required")
        return None
    config = as_object(report, root["configuration"], "$.configuration")
    if config is None:
        return None
    path = "$.configuration"
    warn_unknown(report, config, _CONFIGURATION_KEYS, path)
    enabled = get_bool(report, config, "event.notification.enabled", path, default=False)
    minutes = get_number(
        report,
        config,
        "event.poller.refresh_interval",
        path,
        default=15.0,
        minimum=1 / 60,
        maximum=1440.0,
        message="must be a number of minutes from 1/60 to 1440",
    )
    timezone = get_zone(report, config, "event.poller.timezone", path, default=_UTC)
    poller = decode_object(report, config[_POLLER], child(path, _POLLER)) if _POLLER in config else {}
    resources = (
        () if poller is None else read_resources(report, poller, child(path, _POLLER), timezone=timezone)
    )
    if enabled and poller == {}:
        report.warn(child(path, _POLLER), "names no resources; nothing will be polled")
    source = read_source(report, config, path)
    notification = read_notification(report, config, path, enabled=enabled)
    subscriptions = read_subscriptions(report, root)
    if element_key is None or name is None or source is None:
        return None
    return Instance(
        id=instance_id,
        name=name,
        element_key=element_key,
        tags=tags,
        configuration=MappingProxyType({**config, _POLLER: poller} if _POLLER in config else dict(config)),
        polling_enabled=enabled,
        refresh_interval=minutes * 60,
        timezone=timezone,
        resources=resources,
        source=source,
        notification=notification,
        subscriptions=subscriptions,
    )


def _read_element_key(report: Report, root: Mapping[str, Any]) -> str | None:
    if "element" not in root:
        report.error("$.element", "is required")
        return None
    element = as_object(report, root["element"], "$.element")
    if element is None:
        return None
    warn_unknown(report, element, ("key",), "$.element")
    key = get_string(report, element, "key", "$.element", required=True)
    if key is None:
        return None
    if key not in ELEMENT_KEYS:
        report.error("$.element.key", f"unknown element key {key!r}; known: {', '.join(ELEMENT_KEYS)}")
        return None
    return ELEMENT_KEYS[key]


def _read_tags(report: Report, root: Mapping[str, Any]) -> tuple[str, ...]:
    tags = root.get("tags", [])
    if not isinstance(tags, list):
        report.error("$.tags", f"must be an array of strings, got {json_type(tags)}")
        return ()
    valid = []
    for index, tag in enumerate(tags):
        if not isinstance(tag, str):
            report.error(child("$.tags", index), f"must be a string, got {json_type(tag)}")
        elif (problem := length_problem(tag)) is not None:
            report.error(child("$.tags", index), problem)
        else:
            valid.append(tag)
    return tuple(valid)
