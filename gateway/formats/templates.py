"""Poller URL templates: the placeholders Cloud Elements substitutes with the poll's watermark.

`${gmtDate:FMT}` renders FMT in UTC, `${date:FMT}` in the instance's time zone,
`${dateTimeZone:ZONE:FMT}` in ZONE; `${epoch}` is milliseconds, `${epoch:s|ms|us}` picks the unit.
FMT is a SimpleDateFormat pattern and may quote `}` and `:`, as in `${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.errors import ConfigError
from gateway.formats.dates import DateFormat, DateFormatError, compile_date_format, parse_zone

__all__ = ["TemplateError", "UrlTemplate", "compile_template"]


class TemplateError(ConfigError, ValueError):
    """A poller URL template is malformed."""

    def __init__(self, message: str, *, template: str, position: int) -> None:
        self.template = template
        self.position = position
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class _Placeholder:
    date_format: DateFormat
    zone: ZoneInfo | None  # None: the instance's time zone

    def render(self, watermark: datetime, tz: ZoneInfo) -> str:
        return self.date_format.format(watermark, tz if self.zone is None else self.zone)


@dataclass(frozen=True, slots=True)
class UrlTemplate:
    source: str
    _parts: tuple[str | _Placeholder, ...] = field(repr=False)

    @property
    def has_placeholders(self) -> bool:
        return any(isinstance(part, _Placeholder) for part in self._parts)

    def render(self, watermark: datetime, tz: ZoneInfo) -> str:
        """Substitute `watermark` (aware) into the placeholders; `tz` is the instance's time zone."""
        return "".join(part if isinstance(part, str) else part.render(watermark, tz) for part in self._parts)


def compile_template(url: str) -> UrlTemplate:
    parts: list[str | _Placeholder] = []
    position = 0
    while (start := url.find("${", position)) >= 0:
        if start > position:
            parts.append(url[position:start])
        placeholder, position = _read_placeholder(url, start)
        parts.append(placeholder)
    if position < len(url):
        parts.append(url[position:])
    return UrlTemplate(url, tuple(parts))


_UTC = ZoneInfo("UTC")
_EPOCH_UNITS = {"ms": "milliseconds", "s": "seconds", "us": "microseconds"}
_NAME = re.compile(r"[A-Za-z]*")
_ZONE = re.compile(r"[^:}]*")
# A date format runs to the first `}` outside quotes; `''` is an empty quoted run, so it needs no case.
_FORMAT = re.compile(r"(?:'[^']*'|[^'}])*")


def _read_placeholder(url: str, start: int) -> tuple[_Placeholder, int]:
    """Read the placeholder whose `${` is at `start`; return it and the position after its `}`."""
    name_end = _run_end(_NAME, url, start + 2)
    name = url[start + 2 : name_end]
    if name_end == len(url):
        raise _error(url, "unclosed '${'", start)
    if name == "epoch":
        return _read_epoch(url, start, name_end)
    if name not in ("gmtDate", "date", "dateTimeZone"):
        raise _error(url, f"unknown placeholder {name!r}" if name else "missing placeholder name", start + 2)
    if url[name_end] != ":":
        raise _error(url, f"expected ':' after {name!r}", name_end)
    position = name_end + 1
    zone: ZoneInfo | None = _UTC if name == "gmtDate" else None
    if name == "dateTimeZone":
        zone, position = _read_zone(url, start, position)
    format_end = _run_end(_FORMAT, url, position)
    if format_end == len(url):
        raise _error(url, "unclosed '${'", start)
    if url[format_end] == "'":
        raise _error(url, "unterminated quote", format_end)
    return _Placeholder(_compile_format(url, position, format_end), zone), format_end + 1


def _read_epoch(url: str, start: int, position: int) -> tuple[_Placeholder, int]:
    if url[position] == "}":
        return _Placeholder(compile_date_format("milliseconds"), _UTC), position + 1
    if url[position] != ":":
        raise _error(url, "expected ':' or '}' after 'epoch'", position)
    end = url.find("}", position)
    if end < 0:
        raise _error(url, "unclosed '${'", start)
    unit = url[position + 1 : end]
    if unit not in _EPOCH_UNITS:
        raise _error(url, f"unknown epoch unit {unit!r} (use s, ms or us)", position + 1)
    return _Placeholder(compile_date_format(_EPOCH_UNITS[unit]), _UTC), end + 1


def _read_zone(url: str, start: int, position: int) -> tuple[ZoneInfo, int]:
    end = _run_end(_ZONE, url, position)
    if end == len(url):
        raise _error(url, "unclosed '${'", start)
    if url[end] != ":":
        raise _error(url, "expected ':' and a date format after the time zone", end)
    try:
        return parse_zone(url[position:end]), end + 1
    except DateFormatError as exc:
        raise _error(url, str(exc), position) from exc


def _compile_format(url: str, start: int, end: int) -> DateFormat:
    spec = url[start:end]
    try:
        return compile_date_format(spec)
    except DateFormatError as exc:
        # The inner message counts positions within the format, so it goes after ours.
        raise TemplateError(
            f"bad date format {spec!r} at position {start}: {exc}", template=url, position=start
        ) from exc


def _run_end(pattern: re.Pattern[str], url: str, position: int) -> int:
    """Where the run of `pattern` at `position` ends; every pattern here also matches empty text."""
    match = pattern.match(url, position)
    assert match is not None
    return match.end()


def _error(url: str, problem: str, position: int) -> TemplateError:
    return TemplateError(f"{problem} at position {position}", template=url, position=position)
