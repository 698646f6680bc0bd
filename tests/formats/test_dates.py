from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.formats.dates import DateFormatError, DateValueError, compile_date_format, parse_zone

UTC_ZONE = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


# ---- pattern letters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("yyyy-MM-dd HH:mm:ss", "2020-01-02 03:04:05", utc(2020, 1, 2, 3, 4, 5)),
        ("yyyy-MM-dd HH:mm:ss.SSS", "2020-01-02 03:04:05.007", utc(2020, 1, 2, 3, 4, 5, 7000)),
        ("yyyyMMddHHmmss", "20201231235958", utc(2020, 12, 31, 23, 59, 58)),
        ("M/d/yyyy H:m:s", "1/2/2020 3:4:5", utc(2020, 1, 2, 3, 4, 5)),
        ("M/d/yyyy H:m:s", "11/12/2020 13:14:15", utc(2020, 11, 12, 13, 14, 15)),
        ("dd.MM.yyyy", "02.01.2020", utc(2020, 1, 2)),
        ("HH:mm", "13:14", utc(1970, 1, 1, 13, 14)),  # missing fields default like SimpleDateFormat
        ("yyyy-MM-dd", "2020-01-02T03:04:05Z", utc(2020, 1, 2)),  # trailing text ignored, as in Java
    ],
)
def test_pattern_letters_parse(pattern: str, text: str, expected: datetime) -> None:
    assert compile_date_format(pattern).parse(text, UTC_ZONE) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy-MM-dd HH:mm:ss.SSS", "2020-01-02 03:04:05.006"),
        ("yy/M/d H:m:s", "20/1/2 3:4:5"),
        ("yyyy", "2020"),
        ("SSS", "006"),
    ],
)
def test_pattern_letters_format(pattern: str, expected: str) -> None:
    moment = utc(2020, 1, 2, 3, 4, 5, 6789)
    assert compile_date_format(pattern).format(moment, UTC_ZONE) == expected


def test_four_digit_year_is_zero_padded() -> None:
    assert compile_date_format("yyyy-MM-dd").format(utc(999, 1, 2), UTC_ZONE) == "0999-01-02"


def test_two_digit_year_is_within_80_years_before_and_20_after_now() -> None:
    year_format = compile_date_format("yy")
    this_year = datetime.now(UTC).year
    for year in (this_year - 80, this_year - 1, this_year, this_year + 19):
        text = f"{year % 100:02d}"
        assert year_format.parse(text, UTC_ZONE).year == year


# ---- zones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("yyyy-MM-dd HH:mm Z", "2020-01-02 03:04 +0000", utc(2020, 1, 2, 3, 4)),
        ("yyyy-MM-dd HH:mm Z", "2020-01-02 03:04 -0800", utc(2020, 1, 2, 11, 4)),
        ("yyyy-MM-dd HH:mm ZZZ", "2020-01-02 03:04 +0530", utc(2020, 1, 1, 21, 34)),
        ("yyyy-MM-dd HH:mm X", "2020-01-02 03:04 Z", utc(2020, 1, 2, 3, 4)),
        ("yyyy-MM-dd HH:mm X", "2020-01-02 03:04 +05", utc(2020, 1, 1, 22, 4)),
        ("yyyy-MM-dd HH:mm X", "2020-01-02 03:04 -0130", utc(2020, 1, 2, 4, 34)),
        ("yyyy-MM-dd HH:mm XX", "2020-01-02 03:04 Z", utc(2020, 1, 2, 3, 4)),
        ("yyyy-MM-dd HH:mm XX", "2020-01-02 03:04 +0100", utc(2020, 1, 2, 2, 4)),
        ("yyyy-MM-dd HH:mm XXX", "2020-01-02 03:04 Z", utc(2020, 1, 2, 3, 4)),
        ("yyyy-MM-dd HH:mm XXX", "2020-01-02 03:04 -05:00", utc(2020, 1, 2, 8, 4)),
    ],
)
def test_zone_letters_parse(pattern: str, text: str, expected: datetime) -> None:
    # The zone in the text wins over the zone passed in.
    assert compile_date_format(pattern).parse(text, NEW_YORK) == expected


@pytest.mark.parametrize(
    ("pattern", "zone", "expected"),
    [
        ("HH:mm Z", "UTC", "03:04 +0000"),
        ("HH:mm Z", "America/New_York", "22:04 -0500"),
        ("HH:mm X", "UTC", "03:04 Z"),
        ("HH:mm X", "America/New_York", "22:04 -05"),
        ("HH:mm X", "Asia/Kolkata", "08:34 +0530"),  # SimpleDateFormat would print +05, losing 30 minutes
        ("HH:mm XX", "UTC", "03:04 Z"),
        ("HH:mm XX", "Asia/Kolkata", "08:34 +0530"),
        ("HH:mm XXX", "UTC", "03:04 Z"),
        ("HH:mm XXX", "America/New_York", "22:04 -05:00"),
    ],
)
def test_zone_letters_format_the_offset_of_the_zone(pattern: str, zone: str, expected: str) -> None:
    assert compile_date_format(pattern).format(utc(2020, 1, 2, 3, 4), ZoneInfo(zone)) == expected


@pytest.mark.parametrize("text", ["03:04 +2400", "03:04 +0060", "03:04 +05:7"])
def test_out_of_range_offsets_are_rejected(text: str) -> None:
    with pytest.raises(DateValueError):
        compile_date_format("HH:mm Z").parse(text, UTC_ZONE)


def test_offsets_with_seconds_print_consistently() -> None:
    # New York's local mean time was -4:56:02; the printed offset has no seconds, the instant survives.
    moment = utc(1850, 6, 1, 12, 0, 0)
    pattern = compile_date_format("yyyy-MM-dd'T'HH:mm:ssXXX")
    text = pattern.format(moment, NEW_YORK)
    assert text == "1850-06-01T07:04:00-04:56"
    assert pattern.parse(text, UTC_ZONE) == moment


# ---- quoting ---------------------------------------------------------------------------------


def test_quoted_literals() -> None:
    gmt = compile_date_format("yyyy-MM-dd'T'HH:mm:ss'Z'")
    assert gmt.format(utc(2020, 1, 2, 3, 4, 5), UTC_ZONE) == "2020-01-02T03:04:05Z"
    assert gmt.parse("2020-01-02T03:04:05Z", UTC_ZONE) == utc(2020, 1, 2, 3, 4, 5)


def test_quoted_z_is_a_literal_so_the_text_is_read_in_the_zone_passed() -> None:
    gmt = compile_date_format("yyyy-MM-dd'T'HH:mm:ss'Z'")
    assert gmt.parse("2020-01-02T03:04:05Z", NEW_YORK) == utc(2020, 1, 2, 8, 4, 5)


def test_iso_pattern_with_fraction_and_offset() -> None:
    iso = compile_date_format("yyyy-MM-dd'T'HH:mm:ss.SSSXXX")
    assert iso.parse("2020-01-02T03:04:05.123+05:30", UTC_ZONE) == utc(2020, 1, 1, 21, 34, 5, 123000)
    assert iso.format(utc(2020, 1, 2, 3, 4, 5, 123456), KOLKATA) == "2020-01-02T08:34:05.123+05:30"


@pytest.mark.parametrize(
    ("pattern", "rendered"),
    [
        ("yyyy''MM", "2020'01"),
        ("HH 'o''clock' yyyy", "03 o'clock 2020"),
        ("'at' HH 'in' yyyy", "at 03 in 2020"),
        ("yyyy'':''MM", "2020':'01"),
        ("yyyy'x''y'MM", "2020x'y01"),
        ("yyyy [MM] {dd} ~é", "2020 [01] {02} ~é"),  # non-ASCII letters are literal, as in Java
    ],
)
def test_quote_escapes(pattern: str, rendered: str) -> None:
    date_format = compile_date_format(pattern)
    moment = utc(2020, 1, 2, 3)
    assert date_format.format(moment, UTC_ZONE) == rendered
    assert date_format.format(date_format.parse(rendered, UTC_ZONE), UTC_ZONE) == rendered


# ---- epoch formats ---------------------------------------------------------------------------

MOMENT = utc(2020, 1, 2, 3, 4, 5, 123456)


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("milliseconds", 1577934245123, utc(2020, 1, 2, 3, 4, 5, 123000)),
        ("milliseconds", "1577934245123", utc(2020, 1, 2, 3, 4, 5, 123000)),
        ("milliseconds", 1577934245123.5, utc(2020, 1, 2, 3, 4, 5, 123500)),
        ("milliseconds", "1577934245123.456", MOMENT),
        ("milliseconds", -1, utc(1969, 12, 31, 23, 59, 59, 999000)),
        ("milliseconds", "-1", utc(1969, 12, 31, 23, 59, 59, 999000)),
        ("seconds", 1577934245, utc(2020, 1, 2, 3, 4, 5)),
        ("seconds", "1577934245.123456", MOMENT),
        ("seconds", 1577934245.5, utc(2020, 1, 2, 3, 4, 5, 500000)),
        ("microseconds", 1577934245123456, MOMENT),
        ("microseconds", "1577934245123456", MOMENT),
        ("microseconds", "1.5e15", utc(2017, 7, 14, 2, 40)),
    ],
)
def test_epoch_parse(spec: str, value: object, expected: datetime) -> None:
    parsed = compile_date_format(spec).parse(value, NEW_YORK)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("milliseconds", "1577934245123"), ("seconds", "1577934245"), ("microseconds", "1577934245123456")],
)
def test_epoch_format_renders_integers_whatever_the_zone(spec: str, expected: str) -> None:
    assert compile_date_format(spec).format(MOMENT, NEW_YORK) == expected


def test_epoch_format_floors_before_the_epoch() -> None:
    assert compile_date_format("seconds").format(utc(1969, 12, 31, 23, 59, 59, 500000), UTC_ZONE) == "-1"


@pytest.mark.parametrize(
    "value",
    [True, None, [1], "", "abc", "1,5", "NaN", "inf", float("nan"), float("inf"), "1e999999999", 10**30],
)
def test_epoch_rejects_values(value: object) -> None:
    with pytest.raises(DateValueError, match="milliseconds"):
        compile_date_format("milliseconds").parse(value, UTC_ZONE)


# ---- time zones ------------------------------------------------------------------------------

LOCAL = compile_date_format("yyyy-MM-dd HH:mm:ss")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-01-15 12:00:00", utc(2020, 1, 15, 17)),  # EST, -5
        ("2020-07-15 12:00:00", utc(2020, 7, 15, 16)),  # EDT, -4
        ("2020-03-08 01:59:59", utc(2020, 3, 8, 6, 59, 59)),  # just before spring forward
        ("2020-03-08 02:30:00", utc(2020, 3, 8, 7, 30)),  # never shown on clocks: read before the jump
        ("2020-03-08 03:00:00", utc(2020, 3, 8, 7)),  # just after
        ("2020-11-01 01:30:00", utc(2020, 11, 1, 5, 30)),  # twice that night: the first (EDT) wins
        ("2020-11-01 02:00:00", utc(2020, 11, 1, 7)),
    ],
)
def test_zoneless_pattern_is_read_in_the_zone_passed(text: str, expected: datetime) -> None:
    assert LOCAL.parse(text, NEW_YORK) == expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2020, 1, 15, 17), "2020-01-15 12:00:00"),
        (utc(2020, 7, 15, 16), "2020-07-15 12:00:00"),
        (utc(2020, 11, 1, 5, 30), "2020-11-01 01:30:00"),
        (utc(2020, 11, 1, 6, 30), "2020-11-01 01:30:00"),
    ],
)
def test_zoneless_pattern_renders_in_the_zone_passed(moment: datetime, expected: str) -> None:
    assert LOCAL.format(moment, NEW_YORK) == expected


def test_parse_returns_utc() -> None:
    assert LOCAL.parse("2020-01-15 12:00:00", NEW_YORK).tzinfo is UTC


@pytest.mark.parametrize("name", ["UTC", "GMT", "America/New_York", "Asia/Kolkata", "Etc/GMT+5"])
def test_parse_zone_accepts_iana_names(name: str) -> None:
    assert parse_zone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name", ["Nowhere/Land", "", "utc", "America", "../etc/passwd", "/etc/passwd", "zone.tab"]
)
def test_parse_zone_rejects_unknown_names(name: str) -> None:
    with pytest.raises(DateFormatError, match="is not a known time zone") as caught:
        parse_zone(name)
    assert caught.value.spec == name


def test_parse_zone_message() -> None:
    with pytest.raises(DateFormatError) as caught:
        parse_zone("Nowhere/Land")
    assert str(caught.value) == "'Nowhere/Land' is not a known time zone"


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message", "position"),
    [
        ("yyyyQ", "unknown pattern letter 'Q' at position 4", 4),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSq", "unknown pattern letter 'q' at position 25", 25),
        ("EEE, dd MMM yyyy", "unsupported pattern letter 'E' at position 0", 0),
        ("yyyy-MM-dd hh:mm a", "unsupported pattern letter 'h' at position 11", 11),
        ("dd MMM yyyy", "unsupported pattern 'MMM' at position 3", 3),
        ("yyy-MM-dd", "unsupported pattern 'yyy' at position 0", 0),
        ("ss.SSSSSS", "unsupported pattern 'SSSSSS' at position 3", 3),
        ("HH:mmXXXX", "unsupported pattern 'XXXX' at position 5", 5),
        ("yyyy-MM-dd'T", "unterminated quote at position 10", 10),
        ("yyyy'a''b", "unterminated quote at position 4", 4),
    ],
)
def test_compile_errors_name_the_position(pattern: str, message: str, position: int) -> None:
    with pytest.raises(DateFormatError) as caught:
        compile_date_format(pattern)
    assert str(caught.value) == message
    assert caught.value.position == position
    assert caught.value.spec == pattern


@pytest.mark.parametrize("pattern", ["", "'literal'", "XXX", "-:/"])
def test_patterns_without_fields_are_rejected(pattern: str) -> None:
    with pytest.raises(DateFormatError, match="has no date or time fields"):
        compile_date_format(pattern)


def test_date_format_error_is_a_config_error_and_a_value_error() -> None:
    assert issubclass(DateFormatError, ConfigError)
    assert issubclass(DateFormatError, ValueError)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "2020-13-01",
            "'2020-13-01' is not a valid date for the format 'yyyy-MM-dd': month must be in 1..12",
        ),
        (
            "2020-02-30",
            "'2020-02-30' is not a valid date for the format 'yyyy-MM-dd': day is out of range for month",
        ),
        ("2020/01/01", "'2020/01/01' does not match the date format 'yyyy-MM-dd'"),
        ("", "'' does not match the date format 'yyyy-MM-dd'"),
        (20200101, "20200101 is not a string"),
        (
            "0000-01-01",
            "'0000-01-01' is not a valid date for the format 'yyyy-MM-dd': year 0 is out of range",
        ),
    ],
)
def test_parse_errors_name_the_value_and_the_format(value: object, message: str) -> None:
    with pytest.raises(DateValueError) as caught:
        compile_date_format("yyyy-MM-dd").parse(value, UTC_ZONE)
    assert str(caught.value) == message
    assert caught.value.value == value
    assert caught.value.spec == "yyyy-MM-dd"


def test_parse_error_previews_long_values() -> None:
    with pytest.raises(DateValueError) as caught:
        compile_date_format("yyyy").parse("x" * 10_000, UTC_ZONE)
    assert len(str(caught.value)) < 150


def test_parse_out_of_range_after_the_zone() -> None:
    with pytest.raises(DateValueError, match="out of range"):
        compile_date_format("yyyy-MM-dd HH:mmXXX").parse("0001-01-01 00:00+05:00", UTC_ZONE)


@pytest.mark.parametrize("spec", ["milliseconds", "yyyy-MM-dd"])
def test_format_rejects_naive_datetimes(spec: str) -> None:
    with pytest.raises(DateValueError, match="naive"):
        compile_date_format(spec).format(datetime(2020, 1, 2), UTC_ZONE)


def test_format_out_of_range_in_the_zone() -> None:
    with pytest.raises(DateValueError, match="out of range"):
        compile_date_format("yyyy-MM-dd").format(datetime.max.replace(tzinfo=UTC), KOLKATA)


# ---- properties ------------------------------------------------------------------------------

SEPARATORS = st.sampled_from(["-", "/", ":", " ", ".", ",", "'T'", "''", "'at'", " 'o''clock' ", "_", "|"])
ZONE_LETTERS = st.sampled_from(["", "Z", "ZZZ", "X", "XX", "XXX", "'Z'"])
ZONES = st.sampled_from(
    [
        "UTC",
        "America/New_York",
        "Asia/Kolkata",
        "Asia/Kathmandu",  # +05:45
        "Australia/Lord_Howe",  # half-hour daylight saving
        "Pacific/Chatham",  # +12:45 / +13:45
        "America/St_Johns",  # -03:30
        "Europe/Dublin",  # negative daylight saving
        "Pacific/Kiritimati",  # +14
    ]
).map(ZoneInfo)


@st.composite
def patterns(draw: st.DrawFn) -> tuple[str, bool, bool]:
    """A pattern holding every field from year to second: (pattern, has millis, has two-digit year)."""
    fields = draw(
        st.permutations(
            [
                draw(st.sampled_from(["yyyy", "yy"])),
                draw(st.sampled_from(["MM", "M"])),
                draw(st.sampled_from(["dd", "d"])),
                draw(st.sampled_from(["HH", "H"])),
                draw(st.sampled_from(["mm", "m"])),
                draw(st.sampled_from(["ss", "s"])),
            ]
        )
    )
    millis = draw(st.booleans())
    if millis:
        fields.insert(draw(st.integers(0, len(fields))), "SSS")
    # Separators keep one- or two-digit fields from running into each other.
    pattern = fields[0] + "".join(draw(SEPARATORS) + field for field in fields[1:]) + draw(ZONE_LETTERS)
    return pattern, millis, "yy" in fields


def truncate(moment: datetime, millis: bool) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000 if millis else 0)


def is_ambiguous(moment: datetime, zone: ZoneInfo) -> bool:
    local = moment.astimezone(zone)
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()


MOMENTS = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC))


@given(patterns(), MOMENTS, ZONES)
def test_pattern_round_trip(pattern: tuple[str, bool, bool], moment: datetime, zone: ZoneInfo) -> None:
    spec, millis, two_digit_year = pattern
    date_format = compile_date_format(spec)
    if two_digit_year:
        century_start = datetime.now(UTC).year - 80
        assume(century_start + 1 <= moment.year <= century_start + 98)
    if not spec.endswith(("Z", "X")):
        assume(not is_ambiguous(moment, zone))  # a wall time that happens twice reads as the first
    text = date_format.format(moment, zone)
    assert date_format.parse(text, zone) == truncate(moment, millis)


@given(st.sampled_from(["milliseconds", "seconds", "microseconds"]), MOMENTS, ZONES)
def test_epoch_round_trip(spec: str, moment: datetime, zone: ZoneInfo) -> None:
    date_format = compile_date_format(spec)
    unit = {"milliseconds": timedelta(milliseconds=1), "seconds": timedelta(seconds=1)}.get(spec)
    expected = moment - (moment - datetime(1970, 1, 1, tzinfo=UTC)) % unit if unit else moment
    text = date_format.format(moment, zone)
    assert date_format.parse(text, zone) == expected
    assert date_format.parse(int(text), zone) == expected


DATE_ALPHABET = "0123456789-+:./ TZ'x"
SPECS = st.one_of(
    patterns().map(lambda pattern: pattern[0]),
    st.sampled_from(["milliseconds", "seconds", "microseconds", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"]),
)
VALUES = st.one_of(
    st.text(),
    st.text(alphabet=DATE_ALPHABET),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{0,10})?([eE][+-]?[0-9]{1,12})?", fullmatch=True),
)


@given(SPECS, VALUES, ZONES)
def test_parse_raises_only_date_value_error(spec: str, value: object, zone: ZoneInfo) -> None:
    try:
        parsed = compile_date_format(spec).parse(value, zone)
    except DateValueError:
        return
    assert parsed.tzinfo is UTC


@given(st.one_of(st.text(), st.text(alphabet="yMdHmsSXZQEahz'-: T")))
def test_compile_raises_only_date_format_error(spec: str) -> None:
    try:
        compile_date_format(spec)
    except DateFormatError as error:
        failure = error
    else:
        return
    assert failure.spec == spec
    assert failure.position is None or 0 <= failure.position < len(spec)


# ---- epoch milliseconds, the hot path of polling ---------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("spec", ["milliseconds", "seconds", "microseconds", "yyyy-MM-dd'T'HH:mm:ss'Z'"])
@given(
    value=st.one_of(
        st.integers(),
        st.integers(min_value=-62_135_596_800_001, max_value=253_402_300_800_000),
        st.booleans(),
        st.floats(),
        st.text(max_size=24),
    )
)
def test_parse_ms_is_parse_in_epoch_milliseconds(spec: str, value: object) -> None:
    date_format = compile_date_format(spec)
    try:
        expected: int | None = (date_format.parse(value, UTC_ZONE) - _EPOCH) // timedelta(milliseconds=1)
    except DateValueError:
        expected = None
    try:
        got: int | None = date_format.parse_ms(value, UTC_ZONE)
    except DateValueError:
        got = None
    assert got == expected
