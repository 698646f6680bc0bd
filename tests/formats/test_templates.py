from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.formats.dates import DateFormatError, compile_date_format
from gateway.formats.templates import TemplateError, compile_template

UTC_ZONE = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
WATERMARK = datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
SEED_URL = "/hubs/crm/accounts?where=modifiedon >'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'"


def test_seed_template() -> None:
    template = compile_template(SEED_URL)
    assert template.source == SEED_URL
    assert template.has_placeholders
    rendered = template.render(datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), NEW_YORK)
    assert rendered == "/hubs/crm/accounts?where=modifiedon >'2020-01-02T03:04:05Z'"


@pytest.mark.parametrize(
    ("url", "zone", "expected"),
    [
        ("${gmtDate:yyyy-MM-dd HH:mm:ss}", NEW_YORK, "2020-01-02 03:04:05"),
        ("${date:yyyy-MM-dd HH:mm:ss}", UTC_ZONE, "2020-01-02 03:04:05"),
        ("${date:yyyy-MM-dd HH:mm:ss}", NEW_YORK, "2020-01-01 22:04:05"),
        ("${date:HH:mmXXX}", NEW_YORK, "22:04-05:00"),
        (
            "${dateTimeZone:Asia/Kolkata:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}",
            NEW_YORK,
            "2020-01-02T08:34:05.678+05:30",
        ),
        ("${dateTimeZone:UTC:HH:mm}", NEW_YORK, "03:04"),
        ("${epoch}", NEW_YORK, "1577934245678"),
        ("${epoch:ms}", NEW_YORK, "1577934245678"),
        ("${epoch:s}", NEW_YORK, "1577934245"),
        ("${epoch:us}", NEW_YORK, "1577934245678901"),
    ],
)
def test_placeholders(url: str, zone: ZoneInfo, expected: str) -> None:
    assert compile_template(url).render(WATERMARK, zone) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("${gmtDate:yyyy'}'MM}", "2020}01"),  # a quoted brace does not close the placeholder
        ("${gmtDate:yyyy'{'''MM}", "2020{'01"),
        ("${gmtDate:HH'o''clock'}", "03o'clock"),
        ("${gmtDate:HH:mm}}", "03:04}"),  # the first unquoted brace closes it
        ("a${epoch:s}b${gmtDate:yyyy}c", "a1577934245b2020c"),
        ("${epoch}${epoch:s}", "15779342456781577934245"),
        ("$ {x} $$ }{ ${epoch}", "$ {x} $$ }{ 1577934245678"),
    ],
)
def test_placeholder_boundaries(url: str, expected: str) -> None:
    assert compile_template(url).render(WATERMARK, UTC_ZONE) == expected


def test_text_without_placeholders() -> None:
    template = compile_template("/hubs/crm/accounts?where=fetchChanges='true'")
    assert not template.has_placeholders
    assert template.render(WATERMARK, UTC_ZONE) == "/hubs/crm/accounts?where=fetchChanges='true'"


@pytest.mark.parametrize(
    ("url", "message", "position"),
    [
        ("/x?where=a>'${gmtDate:yyyy", "unclosed '${' at position 12", 12),
        ("${", "unclosed '${' at position 0", 0),
        ("${epoch", "unclosed '${' at position 0", 0),
        ("${epoch:s", "unclosed '${' at position 0", 0),
        ("${dateTimeZone:UTC", "unclosed '${' at position 0", 0),
        ("${gmtDate:yyyy'}", "unterminated quote at position 14", 14),
        ("x${foo:yyyy}", "unknown placeholder 'foo' at position 3", 3),
        ("${}", "missing placeholder name at position 2", 2),
        ("${ gmtDate:yyyy}", "missing placeholder name at position 2", 2),
        ("${gmtDate}", "expected ':' after 'gmtDate' at position 9", 9),
        ("${gmtDate-yyyy}", "expected ':' after 'gmtDate' at position 9", 9),
        ("${epoch:h}", "unknown epoch unit 'h' (use s, ms or us) at position 8", 8),
        ("${epoch:}", "unknown epoch unit '' (use s, ms or us) at position 8", 8),
        ("${epoch-s}", "expected ':' or '}' after 'epoch' at position 7", 7),
        (
            "a=${gmtDate:yyyy-MM-ddQ}",
            "bad date format 'yyyy-MM-ddQ' at position 12: unknown pattern letter 'Q' at position 10",
            12,
        ),
        ("${date:}", "bad date format '' at position 7: date format '' has no date or time fields", 7),
        ("${dateTimeZone:Nowhere/Land:yyyy}", "'Nowhere/Land' is not a known time zone at position 15", 15),
        ("${dateTimeZone:UTC}", "expected ':' and a date format after the time zone at position 18", 18),
    ],
)
def test_errors_name_the_position(url: str, message: str, position: int) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(url)
    assert str(caught.value) == message
    assert caught.value.position == position
    assert caught.value.template == url


def test_bad_date_format_keeps_its_cause() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template("${gmtDate:Q}")
    assert isinstance(caught.value.__cause__, DateFormatError)
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, ValueError)


# ---- properties ------------------------------------------------------------------------------

PLAIN_TEXT = st.text().filter(lambda text: "${" not in text)


@given(PLAIN_TEXT)
def test_text_without_placeholders_renders_unchanged(text: str) -> None:
    template = compile_template(text)
    assert not template.has_placeholders
    assert template.render(WATERMARK, NEW_YORK) == text


FORMATS = st.sampled_from(
    [
        "yyyy-MM-dd'T'HH:mm:ss'Z'",
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "yyyy-MM-dd HH:mm:ss Z",
        "yyyyMMddHHmmss",
        "dd/MM/yyyy H:m:s.SSS",
        "yyyy'}'MM'{'dd'T'HH:mm:ss''X",
        "'at' HH:mm:ss 'on' d.M.yyyy",
    ]
)
ZONES = st.sampled_from(["UTC", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"])
WATERMARKS = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def truncate(moment: datetime, spec: str) -> datetime:
    if spec == "microseconds":
        return moment
    if spec == "milliseconds" or "SSS" in spec:
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment.replace(microsecond=0)


@st.composite
def placeholders(draw: st.DrawFn) -> tuple[str, str, ZoneInfo | None]:
    """(placeholder, the date format it renders, its zone or None for the instance's zone)."""
    kind = draw(st.sampled_from(["gmtDate", "date", "dateTimeZone", "epoch"]))
    if kind == "epoch":
        unit = draw(st.sampled_from(["", ":s", ":ms", ":us"]))
        spec = {"": "milliseconds", ":s": "seconds", ":ms": "milliseconds", ":us": "microseconds"}[unit]
        return "${epoch" + unit + "}", spec, UTC_ZONE
    spec = draw(FORMATS)
    if kind == "gmtDate":
        return "${gmtDate:" + spec + "}", spec, UTC_ZONE
    if kind == "date":
        return "${date:" + spec + "}", spec, None
    zone = draw(ZONES)
    return "${dateTimeZone:" + zone + ":" + spec + "}", spec, ZoneInfo(zone)


@given(PLAIN_TEXT, placeholders(), PLAIN_TEXT, WATERMARKS, ZONES.map(ZoneInfo))
def test_render_then_parse_gives_the_watermark(
    prefix: str,
    placeholder: tuple[str, str, ZoneInfo | None],
    suffix: str,
    watermark: datetime,
    instance_zone: ZoneInfo,
) -> None:
    text, spec, zone = placeholder
    zone = zone or instance_zone
    local = watermark.astimezone(zone)
    # A wall time that happens twice reads back as the first, unless the format prints the offset.
    assume(local.replace(fold=0).utcoffset() == local.replace(fold=1).utcoffset() or spec[-1] in "ZX")
    rendered = compile_template(prefix + text + suffix).render(watermark, instance_zone)
    assert rendered.startswith(prefix)
    assert rendered.endswith(suffix)
    substituted = rendered[len(prefix) : len(rendered) - len(suffix)]
    assert compile_date_format(spec).parse(substituted, zone) == truncate(watermark, spec)


TEMPLATE_PIECES = st.sampled_from(
    [
        "${",
        "}",
        ":",
        "'",
        "''",
        "gmtDate",
        "date",
        "dateTimeZone",
        "epoch",
        "s",
        "ms",
        "us",
        "UTC",
        "America/New_York",
        "Nowhere",
        "yyyy",
        "MM",
        "dd",
        "HH",
        "Q",
        "XXX",
        "T",
        "$",
        "{",
        "/hubs/crm/a?where=",
    ]
)


@given(st.one_of(st.text(), st.lists(TEMPLATE_PIECES).map("".join)), WATERMARKS, ZONES.map(ZoneInfo))
def test_compile_raises_only_template_error(url: str, watermark: datetime, zone: ZoneInfo) -> None:
    try:
        template = compile_template(url)
    except TemplateError as error:
        failure = error
    else:
        assert isinstance(template.render(watermark, zone), str)
        return
    assert f" at position {failure.position}" in str(failure)
    assert 0 <= failure.position <= len(url)
