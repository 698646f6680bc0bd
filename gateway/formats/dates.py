"""Date formats of the poller configuration: epoch numbers or Java SimpleDateFormat patterns.

A format is compiled once, when an instance is configured, and then parses the dates of every
record polled, so parsing is a single regex match plus a few integer conversions.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum, IntEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from gateway.errors import ConfigError, SourceResponseError

__all__ = ["DateFormat", "DateFormatError", "DateValueError", "compile_date_format", "parse_zone"]


class DateFormatError(ConfigError, ValueError):
    """A date format or a time zone name in the configuration is invalid."""

    def __init__(self, message: str, *, spec: str, position: int | None = None) -> None:
        self.spec = spec  # the format or zone name at fault
        self.position = position  # index into spec, when one character is to blame
        super().__init__(message)


class DateValueError(SourceResponseError, ValueError):
    """A value does not match its date format, or names a moment outside the representable range."""

    def __init__(self, message: str, *, value: object, spec: str) -> None:
        self.value = value
        self.spec = spec
        super().__init__(message)


class DateFormat(ABC):
    """A compiled date format: reads dates from records and renders watermarks into URLs."""

    __slots__ = ()

    spec: str

    @abstractmethod
    def parse(self, value: object, tz: ZoneInfo) -> datetime:
        """Read `value` as an aware UTC datetime; patterns without a zone letter are read in `tz`."""

    @abstractmethod
    def format(self, moment: datetime, tz: ZoneInfo) -> str:
        """Render the aware datetime `moment`, in `tz` for patterns."""

    def parse_ms(self, value: object, tz: ZoneInfo) -> int:
        """`parse`, as epoch milliseconds rounded down; integer arithmetic, so no float rounding."""
        return (self.parse(value, tz) - _EPOCH) // _MILLISECOND


def compile_date_format(spec: str) -> DateFormat:
    """Compile `milliseconds`, `seconds`, `microseconds` or a SimpleDateFormat pattern."""
    unit = _EPOCH_UNITS.get(spec)
    if unit is not None:
        return _EpochFormat(spec, unit)
    return _compile_pattern(spec)


def parse_zone(name: str) -> ZoneInfo:
    """Look up an IANA time zone name such as `UTC`, `GMT` or `America/New_York`."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError) as exc:  # not found, not a normalized key, unreadable
        raise DateFormatError(f"{name!r} is not a known time zone", spec=name) from exc


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
# The epoch milliseconds of the first and last representable millisecond (years 1 and 9999).
_MIN_MS = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MILLISECOND
_MAX_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MILLISECOND
_EPOCH_UNITS = {
    "milliseconds": timedelta(milliseconds=1),
    "seconds": timedelta(seconds=1),
    "microseconds": timedelta(microseconds=1),
}
# Beyond this many microseconds from the epoch no datetime exists; checked before converting a
# Decimal such as 1e999999 to an int, which would take forever.
_MAX_MICROSECONDS = 10**18


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _require_aware(moment: datetime, spec: str) -> None:
    if moment.utcoffset() is None:
        raise DateValueError(
            f"cannot render the naive datetime {moment} as {spec!r}", value=moment, spec=spec
        )


@dataclass(frozen=True, slots=True)
class _EpochFormat(DateFormat):
    spec: str
    unit: timedelta

    def parse(self, value: object, tz: ZoneInfo) -> datetime:
        try:
            if type(value) is int:  # the hot path: most CRMs send integer milliseconds
                return _EPOCH + value * self.unit
            if type(value) is str:
                return _EPOCH + self._from_text(value)
            if type(value) is float:
                return _EPOCH + self._from_decimal(Decimal(value))
        except (ArithmeticError, ValueError) as exc:  # includes OverflowError and decimal.InvalidOperation
            raise DateValueError(
                f"{_preview(value)} is not a valid {self.spec} timestamp", value=value, spec=self.spec
            ) from exc
        raise DateValueError(f"{_preview(value)} is not a number of {self.spec}", value=value, spec=self.spec)

    def parse_ms(self, value: object, tz: ZoneInfo) -> int:
        # The hot path of polling: integer milliseconds need no datetime at all.
        if type(value) is int and self.spec == "milliseconds" and _MIN_MS <= value <= _MAX_MS:
            return value
        return (self.parse(value, tz) - _EPOCH) // _MILLISECOND

    def format(self, moment: datetime, tz: ZoneInfo) -> str:
        _require_aware(moment, self.spec)
        return str((moment - _EPOCH) // self.unit)

    def _from_text(self, text: str) -> timedelta:
        # Most numeric strings are integers; try that cheaply before reaching for Decimal.
        if text.isdigit():
            return int(text) * self.unit
        return self._from_decimal(Decimal(text))

    def _from_decimal(self, units: Decimal) -> timedelta:
        microseconds = units * (self.unit // timedelta(microseconds=1))
        if not microseconds.is_finite() or abs(microseconds) > _MAX_MICROSECONDS:
            raise OverflowError("out of range")
        return timedelta(microseconds=int(microseconds.to_integral_value()))


class _Field(IntEnum):
    """A part of a date; its value is its slot in the list a parse fills in."""

    YEAR = 0
    MONTH = 1
    DAY = 2
    HOUR = 3
    MINUTE = 4
    SECOND = 5
    MILLISECOND = 6
    YEAR_OF_CENTURY = 7

    def of(self, local: datetime) -> int:
        if self is _Field.YEAR_OF_CENTURY:
            return local.year % 100
        if self is _Field.MILLISECOND:
            return local.microsecond // 1000
        return (local.year, local.month, local.day, local.hour, local.minute, local.second)[self]


# What a parse assumes for fields the pattern lacks, as SimpleDateFormat does: 1970-01-01 00:00.
_DEFAULTS = (1970, 1, 1, 0, 0, 0, 0, 0)


class _OffsetStyle(Enum):
    RFC_822 = "Z"  # +0000
    ISO_HOURS = "X"  # Z, +05, or +0530 (SimpleDateFormat would drop the 30 minutes)
    ISO_BASIC = "XX"  # Z or +0530
    ISO_EXTENDED = "XXX"  # Z or +05:30


_OFFSET_REGEX = {
    _OffsetStyle.RFC_822: r"([+-][0-9]{4})",
    _OffsetStyle.ISO_HOURS: r"(Z|[+-][0-9]{2}(?:[0-9]{2})?)",
    _OffsetStyle.ISO_BASIC: r"(Z|[+-][0-9]{4})",
    _OffsetStyle.ISO_EXTENDED: r"(Z|[+-][0-9]{2}:[0-9]{2})",
}


@dataclass(frozen=True, slots=True)
class _Literal:
    text: str

    def regex(self) -> str:
        return re.escape(self.text)

    def render(self, local: datetime, offset: timedelta) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class _Number:
    field: _Field
    width: int  # digits; 1 means one or two, like SimpleDateFormat's single letters

    def regex(self) -> str:
        return "([0-9]{1,2})" if self.width == 1 else f"([0-9]{{{self.width}}})"

    def render(self, local: datetime, offset: timedelta) -> str:
        return f"{self.field.of(local):0{self.width}d}"


@dataclass(frozen=True, slots=True)
class _Offset:
    style: _OffsetStyle

    def regex(self) -> str:
        return _OFFSET_REGEX[self.style]

    def render(self, local: datetime, offset: timedelta) -> str:
        if not offset and self.style is not _OffsetStyle.RFC_822:
            return "Z"
        sign = "-" if offset < timedelta(0) else "+"
        hours, minutes = divmod(abs(offset) // timedelta(minutes=1), 60)
        if self.style is _OffsetStyle.ISO_EXTENDED:
            return f"{sign}{hours:02d}:{minutes:02d}"
        if self.style is _OffsetStyle.ISO_HOURS and not minutes:
            return f"{sign}{hours:02d}"
        return f"{sign}{hours:02d}{minutes:02d}"


_Token = _Literal | _Number | _Offset

_TOKENS: dict[tuple[str, int], _Token] = {
    ("y", 2): _Number(_Field.YEAR_OF_CENTURY, 2),
    ("y", 4): _Number(_Field.YEAR, 4),
    **{
        (letter, width): _Number(number_field, width)
        for letter, number_field in (
            ("M", _Field.MONTH),
            ("d", _Field.DAY),
            ("H", _Field.HOUR),
            ("m", _Field.MINUTE),
            ("s", _Field.SECOND),
        )
        for width in (1, 2)
    },
    # SimpleDateFormat counts milliseconds with any number of S; only SSS means what people expect.
    ("S", 3): _Number(_Field.MILLISECOND, 3),
    ("X", 1): _Offset(_OffsetStyle.ISO_HOURS),
    ("X", 2): _Offset(_OffsetStyle.ISO_BASIC),
    ("X", 3): _Offset(_OffsetStyle.ISO_EXTENDED),
}
_SUPPORTED_LETTERS = frozenset(letter for letter, _ in _TOKENS) | {"Z"}
_JAVA_LETTERS = frozenset("GyYMLwWDdFEuaHkKhmsSzZX")


@dataclass(frozen=True, slots=True)
class _PatternFormat(DateFormat):
    spec: str
    tokens: tuple[_Token, ...] = field(repr=False)
    regex: re.Pattern[str] = field(repr=False)
    number_groups: tuple[tuple[int, _Field], ...] = field(repr=False)  # (regex group, field)
    offset_group: int | None = field(repr=False)  # the regex group of the zone, if any
    century_start: int | None = field(repr=False)  # where `yy` years begin, if the pattern has `yy`

    def parse(self, value: object, tz: ZoneInfo) -> datetime:
        if type(value) is not str:
            raise DateValueError(f"{_preview(value)} is not a string", value=value, spec=self.spec)
        # Like SimpleDateFormat.parse, text after the pattern is ignored.
        match = self.regex.match(value)
        if match is None:
            raise DateValueError(
                f"{_preview(value)} does not match the date format {self.spec!r}", value=value, spec=self.spec
            )
        fields = list(_DEFAULTS)
        for group, number_field in self.number_groups:
            fields[number_field] = int(match[group])
        if self.century_start is not None:
            fields[_Field.YEAR] = _expand_year(fields[_Field.YEAR_OF_CENTURY], self.century_start)
        try:
            zone = tz if self.offset_group is None else _fixed_zone(match[self.offset_group])
            year, month, day, hour, minute, second, millisecond, _ = fields
            local = datetime(year, month, day, hour, minute, second, millisecond * 1000, tzinfo=zone)
            return local.astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise DateValueError(
                f"{_preview(value)} is not a valid date for the format {self.spec!r}: {exc}",
                value=value,
                spec=self.spec,
            ) from exc

    def format(self, moment: datetime, tz: ZoneInfo) -> str:
        _require_aware(moment, self.spec)
        try:
            local = moment.astimezone(tz)
            exact = local.utcoffset() or timedelta(0)
            offset = _whole_minutes(exact)
            if self.offset_group is not None and offset != exact:
                # Offsets print without seconds, so shift the wall time to agree with the offset
                # printed. Only local mean times before about 1900 have such offsets.
                local = moment.astimezone(timezone(offset))
        except OverflowError as exc:
            raise DateValueError(f"{moment} is out of range in {tz}", value=moment, spec=self.spec) from exc
        return "".join(token.render(local, offset) for token in self.tokens)


def _compile_pattern(spec: str) -> _PatternFormat:
    tokens = _tokenize(spec)
    number_groups: list[tuple[int, _Field]] = []
    offset_group: int | None = None
    group = 0
    for token in tokens:
        if isinstance(token, _Number):
            group += 1
            number_groups.append((group, token.field))
        elif isinstance(token, _Offset):
            group += 1
            offset_group = group  # SimpleDateFormat lets the last of several zones win
    if not number_groups:
        raise DateFormatError(f"date format {spec!r} has no date or time fields", spec=spec)
    two_digit_year = any(number_field is _Field.YEAR_OF_CENTURY for _, number_field in number_groups)
    return _PatternFormat(
        spec=spec,
        tokens=tokens,
        regex=re.compile("".join(token.regex() for token in tokens)),
        number_groups=tuple(number_groups),
        offset_group=offset_group,
        # SimpleDateFormat reads `yy` as within 80 years before and 20 after the format's creation.
        century_start=datetime.now(UTC).year - 80 if two_digit_year else None,
    )


def _tokenize(spec: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    literal: list[str] = []
    position = 0
    while position < len(spec):
        char = spec[position]
        if char == "'":
            text, position = _read_quoted(spec, position)
            literal.append(text)
        elif "a" <= char <= "z" or "A" <= char <= "Z":
            end = position
            while end < len(spec) and spec[end] == char:
                end += 1
            if literal:
                tokens.append(_Literal("".join(literal)))
                literal.clear()
            tokens.append(_letter_token(spec, char, end - position, position))
            position = end
        else:
            literal.append(char)
            position += 1
    if literal:
        tokens.append(_Literal("".join(literal)))
    return tuple(tokens)


def _read_quoted(spec: str, start: int) -> tuple[str, int]:
    """Read the quoted literal at `start`; return its text and the position after it."""
    if spec.startswith("''", start):
        return "'", start + 2
    parts: list[str] = []
    position = start + 1
    while True:
        end = spec.find("'", position)
        if end < 0:
            raise DateFormatError(f"unterminated quote at position {start}", spec=spec, position=start)
        parts.append(spec[position:end])
        if not spec.startswith("''", end):
            return "".join(parts), end + 1
        parts.append("'")  # a doubled quote inside a quoted literal
        position = end + 2


def _letter_token(spec: str, letter: str, count: int, position: int) -> _Token:
    token = _TOKENS.get((letter, count))
    if token is not None:
        return token
    if letter == "Z":
        return _Offset(_OffsetStyle.RFC_822)
    if letter in _SUPPORTED_LETTERS:
        message = f"unsupported pattern {letter * count!r} at position {position}"
    elif letter in _JAVA_LETTERS:
        message = f"unsupported pattern letter {letter!r} at position {position}"
    else:
        message = f"unknown pattern letter {letter!r} at position {position}"
    raise DateFormatError(message, spec=spec, position=position)


def _whole_minutes(offset: timedelta) -> timedelta:
    """Truncate toward zero, as SimpleDateFormat does when it prints an offset."""
    minutes = abs(offset) // timedelta(minutes=1)
    return timedelta(minutes=minutes if offset >= timedelta(0) else -minutes)


def _expand_year(year_of_century: int, century_start: int) -> int:
    year = century_start - century_start % 100 + year_of_century
    return year if year >= century_start else year + 100


@lru_cache(maxsize=256)
def _fixed_zone(text: str) -> tzinfo:
    """The zone of an offset matched by one of `_OFFSET_REGEX`: `Z`, `+05`, `+0530` or `+05:30`."""
    if text == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {text} out of range")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if text[0] == "-" else offset)
