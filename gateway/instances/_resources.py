"""Reading `event.poller.configuration`: one ResourceConfig per polled resource."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.formats.ceql import (
    CeqlError,
    ChangeTracking,
    HubUrlError,
    parse_hub_url,
    translate_where,
)
from gateway.formats.dates import DateFormat, DateFormatError, compile_date_format
from gateway.formats.templates import TemplateError, UrlTemplate, compile_template
from gateway.instances._read import (
    Report,
    as_object,
    child,
    decode_object,
    get_bool,
    get_integer,
    get_number,
    get_string,
    get_zone,
    json_type,
    warn_unknown,
)
from gateway.instances.model import DatesConfiguration, ResourceConfig

# Templates are rendered at this watermark to check the hub URL and where clause they produce.
_SAMPLE_WATERMARK = datetime(2000, 1, 1, tzinfo=UTC)
_FIELD_PATH = re.compile(r"[^.\s]+(\.[^.\s]+)*")
_LOGICAL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

RESOURCE_KEYS = (
    "url",
    "idField",
    "datesConfiguration",
    "pageSize",
    "pollDelay",
    "createdCheckTolerance",
    "filterByUpdatedDate",
    "filterByCurrentDate",
    "snapshot",
    "primaryKey",
    "previousValues",
    "select",
    "formattedValues",
    "deletesCheckInterval",
)
DATES_KEYS = (
    "updatedDateField",
    "updatedDateFormat",
    "updatedDateTimezone",
    "createdDateField",
    "createdDateFormat",
    "createdDateTimezone",
)


@dataclass(frozen=True, slots=True)
class _Target:
    url: UrlTemplate
    hub: str
    object_type: str
    change_tracking: bool


def read_resources(
    report: Report, value: object, path: str, *, timezone: ZoneInfo
) -> tuple[ResourceConfig, ...]:
    resources = decode_object(report, value, path)
    if resources is None:
        return ()
    read = (
        _read_resource(report, name, spec, child(path, name), timezone) for name, spec in resources.items()
    )
    return tuple(resource for resource in read if resource is not None)


def _read_resource(
    report: Report, name: str, value: object, path: str, timezone: ZoneInfo
) -> ResourceConfig | None:
    spec = as_object(report, value, path)
    if spec is None:
        return None
    warn_unknown(report, spec, RESOURCE_KEYS, path)
    target = _read_target(report, spec, path, timezone)
    id_field = _get_field_path(report, spec, "idField", path, required=True)
    dates = _read_dates(report, spec, path, timezone)
    page_size = get_integer(report, spec, "pageSize", path, default=5000, minimum=1, maximum=5000)
    seconds = "must be a number of seconds >= 0"
    poll_delay = get_number(report, spec, "pollDelay", path, default=0.0, minimum=0.0, message=seconds)
    tolerance = get_number(
        report, spec, "createdCheckTolerance", path, default=0.0, minimum=0.0, message=seconds
    )
    filter_by_updated_date = get_bool(report, spec, "filterByUpdatedDate", path, default=True)
    filter_by_current_date = get_bool(report, spec, "filterByCurrentDate", path, default=False)
    snapshot = get_bool(report, spec, "snapshot", path, default=False)
    previous_values = get_bool(report, spec, "previousValues", path, default=False)
    formatted_values = get_bool(report, spec, "formattedValues", path, default=False)
    deletes_check_minutes = get_number(
        report,
        spec,
        "deletesCheckInterval",
        path,
        default=60.0,
        minimum=0.0,
        maximum=10080.0,
        message="must be a number of minutes from 0 (never) to 10080",
    )
    primary_key = get_string(report, spec, "primaryKey", path)
    select = _read_select(report, spec, path)
    if primary_key is not None and not _LOGICAL_NAME.fullmatch(primary_key):
        report.error(child(path, "primaryKey"), "must be a column's logical name, such as accountid")
    if snapshot and target is not None and not target.change_tracking:
        report.warn(
            child(path, "snapshot"), "applies only to change tracking (where=fetchChanges='true'); ignored"
        )
    if target is None or id_field is None or dates is None:
        return None
    return ResourceConfig(
        name=name,
        url=target.url,
        hub=target.hub,
        object_type=target.object_type,
        id_field=id_field,
        dates=dates,
        page_size=page_size,
        poll_delay=poll_delay,
        created_check_tolerance=tolerance,
        filter_by_updated_date=filter_by_updated_date,
        filter_by_current_date=filter_by_current_date,
        snapshot=snapshot,
        primary_key=primary_key,
        previous_values=previous_values,
        select=select,
        formatted_values=formatted_values,
        deletes_check_interval=deletes_check_minutes * 60,
        change_tracking=target.change_tracking,
    )


def _read_select(report: Report, spec: Mapping[str, Any], path: str) -> tuple[str, ...] | None:
    """The columns to fetch: logical names, or `_<lookup>_value` for a lookup's id."""
    if "select" not in spec:
        return None
    path = child(path, "select")
    columns = spec["select"]
    if not isinstance(columns, list) or not columns:
        report.error(path, f"must be a non-empty array of column names, got {_described(columns)}")
        return None
    seen: set[str] = set()
    for index, column in enumerate(columns):
        if not isinstance(column, str) or not _LOGICAL_NAME.fullmatch(column):
            report.error(
                child(path, index), "must be a column's logical name, such as name or _parentaccountid_value"
            )
        elif column in seen:
            report.error(child(path, index), f"repeats {column}")
        else:
            seen.add(column)
    return tuple(columns) if len(seen) == len(columns) else None


def _described(value: object) -> str:
    return "an empty array" if value == [] else json_type(value)


def _read_target(report: Report, spec: Mapping[str, Any], path: str, timezone: ZoneInfo) -> _Target | None:
    """The URL template, checked by rendering it and reading the hub URL and where clause it gives."""
    source = get_string(report, spec, "url", path, required=True)
    if source is None:
        return None
    path = child(path, "url")
    try:
        template = compile_template(source)
        query = parse_hub_url(template.render(_SAMPLE_WATERMARK, timezone))
        where = None if query.where is None else translate_where(query.where)
    except TemplateError as exc:
        report.error(path, f"invalid URL template: {exc}")
        return None
    except HubUrlError as exc:
        report.error(path, f"invalid hub URL: {exc}")
        return None
    except CeqlError as exc:
        report.error(path, f"invalid where clause: {exc}")
        return None
    return _Target(template, query.hub, query.resource, isinstance(where, ChangeTracking))


def _read_dates(
    report: Report, spec: Mapping[str, Any], path: str, timezone: ZoneInfo
) -> DatesConfiguration | None:
    path = child(path, "datesConfiguration")
    if "datesConfiguration" not in spec:
        report.error(path, "is required")
        return None
    dates = as_object(report, spec["datesConfiguration"], path)
    if dates is None:
        return None
    warn_unknown(report, dates, DATES_KEYS, path)
    updated_field = _get_field_path(report, dates, "updatedDateField", path, required=True)
    updated_format = _get_format(report, dates, "updatedDateFormat", path, required=True)
    updated_timezone = get_zone(report, dates, "updatedDateTimezone", path, default=timezone)
    created_field = _get_field_path(report, dates, "createdDateField", path)
    created_format = _get_format(report, dates, "createdDateFormat", path)
    created_timezone = get_zone(report, dates, "createdDateTimezone", path, default=timezone)
    if "createdDateFormat" in dates and "createdDateField" not in dates:
        report.error(child(path, "createdDateFormat"), "requires createdDateField")
    if updated_field is None or updated_format is None:
        return None
    return DatesConfiguration(
        updated_field=updated_field,
        updated_format=updated_format,
        updated_timezone=updated_timezone,
        created_field=created_field,
        created_format=None if created_field is None else created_format or updated_format,
        created_timezone=created_timezone,
    )


def _get_field_path(
    report: Report, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False
) -> str | None:
    value = get_string(report, obj, key, path, required=required)
    if value is not None and not _FIELD_PATH.fullmatch(value):
        report.error(child(path, key), "must be a dotted field path, such as attributes.modifiedon")
        return None
    return value


def _get_format(
    report: Report, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False
) -> DateFormat | None:
    spec = get_string(report, obj, key, path, required=required)
    if spec is None:
        return None
    try:
        return compile_date_format(spec)
    except DateFormatError as exc:
        report.error(child(path, key), f"unknown date format: {exc}")
        return None
