"""Reading typed values out of an instance body while collecting every problem.

Paths are in the notation described in `gateway.instances.validate`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from gateway.errors import Problem
from gateway.formats.dates import DateFormatError, parse_zone

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSIGNED_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_UNSIGNED_INTEGER = re.compile(r"[0-9]{1,18}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class Report:
    """The errors and warnings found so far."""

    __slots__ = ("errors", "warnings")

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message))


def child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    quoted = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{path}['{quoted}']"


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def as_object(report: Report, value: object, path: str) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    report.error(path, f"must be an object, got {json_type(value)}")
    return None


def decode_object(report: Report, value: object, path: str) -> Mapping[str, Any] | None:
    """An object given as such or as a string of JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            report.error(path, f"is not valid JSON: {exc}")
            return None
    return as_object(report, value, path)


def warn_unknown(report: Report, obj: Mapping[str, Any], known: Collection[str], path: str) -> None:
    for key in obj:
        if key not in known:
            report.warn(child(path, key), "unknown key; ignored")


# Longer than any name, URL, template or credential an instance needs, and short enough that a body
# of many fields stays far below Kafka's message limit, where the instance is stored.
MAX_STRING_LENGTH = 8192


def length_problem(value: str) -> str | None:
    """Why `value` is too long to store, or None."""
    if len(value) <= MAX_STRING_LENGTH:
        return None
    return f"must be at most {MAX_STRING_LENGTH:,} characters, got {len(value):,}"


def get_string(
    report: Report, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False
) -> str | None:
    """A non-empty string, or None when it is absent (an error when required) or invalid."""
    path = child(path, key)
    if key not in obj:
        if required:
            report.error(path, "is required")
        return None
    value = obj[key]
    if not isinstance(value, str):
        report.error(path, f"must be a string, got {json_type(value)}")
        return None
    if not value.strip():
        report.error(path, "must not be empty")
        return None
    if (problem := length_problem(value)) is not None:
        report.error(path, problem)
        return None
    return value


def get_bool(report: Report, obj: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
    """A boolean, also given as the string "true" or "false" as Cloud Elements bodies do."""
    value = obj.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    report.error(child(path, key), "must be true or false")
    return default


def get_number(
    report: Report,
    obj: Mapping[str, Any],
    key: str,
    path: str,
    *,
    default: float,
    minimum: float,
    maximum: float = sys.float_info.max,
    message: str,
) -> float:
    """A number, also given as a string of digits, within [minimum, maximum]."""
    value = obj.get(key, default)
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _UNSIGNED_NUMBER.fullmatch(value):
        number = float(value)
    if number is None or not minimum <= number <= maximum:
        report.error(child(path, key), message)
        return default
    return float(number)


def get_integer(
    report: Report,
    obj: Mapping[str, Any],
    key: str,
    path: str,
    *,
    default: int,
    minimum: int,
    maximum: int,
) -> int:
    """An integer, also given as a string of digits, within [minimum, maximum]."""
    value = obj.get(key, default)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _UNSIGNED_INTEGER.fullmatch(value)
    ):
        number = int(value)
    if number is None or not minimum <= number <= maximum:
        report.error(child(path, key), f"must be an integer from {minimum} to {maximum}")
        return default
    return number


def get_zone(report: Report, obj: Mapping[str, Any], key: str, path: str, *, default: ZoneInfo) -> ZoneInfo:
    name = get_string(report, obj, key, path)
    if name is None:
        return default
    try:
        return parse_zone(name)
    except DateFormatError as exc:
        report.error(child(path, key), str(exc))
        return default


def has_scheme(url: str) -> bool:
    return _SCHEME.match(url) is not None


def http_url_problem(url: str) -> str | None:
    """Why `url` is not an absolute http(s) URL with a host and no user info, or None if it is."""
    if _SPACE_OR_CONTROL.search(url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError when the port is not a number in 0..65535
    except ValueError as exc:
        return f"is not a valid URL: {_url_error(exc)}"
    if parts.scheme not in ("http", "https"):  # urlsplit lowercases the scheme
        return "must be a URL with scheme http or https"
    if "@" in parts.netloc:
        return "must not contain a user name or password"
    if not parts.hostname:
        return "must be a URL with a host"
    return None


def _url_error(exc: ValueError) -> str:
    """urllib's reason, without the part of the URL some of its messages quote: that part (a port, a
    netloc) may hold a token, and the message reaches responses and logs."""
    reason = str(exc)
    if reason.startswith("Port could not be cast"):
        return "its port is not a number"
    if reason.startswith("netloc"):
        return "its host has characters that NFKC normalization changes"
    return reason.split("'", 1)[0].strip() or "it cannot be parsed"
