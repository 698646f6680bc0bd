from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sim import TABLES, FilterError, parse_filter

ACCOUNTS = TABLES["accounts"]
OWNER = "0d6f8d46-7d1c-4a4b-9a77-3f0b1c2d3e4f"


def account(**columns: Any) -> dict[str, Any]:
    row = ACCOUNTS.make(random.Random(1))
    row.update(
        accountid="6f0c5a52-1d3b-4e6e-8a7c-2b9d0e1f2a3b",
        createdon="2026-01-01T00:00:00Z",
        modifiedon="2026-01-02T03:04:05Z",
        versionnumber=1,
    )
    row.update(columns)
    return row


ROW = account(name="O'Brien Ltd", revenue=1500.5, numberofemployees=40, _ownerid_value=OWNER, fax=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("modifiedon gt 2026-01-01T00:00:00Z", True),
        ("modifiedon gt 2026-01-02T03:04:05Z", False),
        ("modifiedon ge 2026-01-02T03:04:05Z", True),
        ("modifiedon lt 2026-01-02T04:04:05+01:00", False),  # the same instant in another offset
        ("modifiedon le 2026-01-02T04:04:05+01:00", True),
        ("modifiedon gt 2026-01-02T03:04:04.9999999Z", True),
        ("createdon eq 2026-01-01", True),
        ("name eq 'O''Brien Ltd'", True),
        ("name eq 'o''brien ltd'", True),  # case-insensitive, as SQL Server compares
        ("name ne 'O''Brien Ltd'", False),
        ("name gt 'N' and name lt 'P'", True),
        ("revenue gt 1500", True),
        ("revenue eq 1500.5", True),
        ("numberofemployees le 39", False),
        ("numberofemployees ge -5 and revenue lt 1e6", True),
        ("fax eq null", True),
        ("fax ne null", False),
        ("fax gt 'a'", False),
        ("name eq null", False),
        (f"_ownerid_value eq {OWNER.upper()}", True),
        ("donotemail eq true or donotemail eq false", True),
        ("revenue gt 2000 or numberofemployees eq 40 and name eq 'x'", False),  # and binds tighter
        ("(revenue gt 2000 or numberofemployees eq 40) and name eq 'o''brien ltd'", True),
        ("not (revenue gt 2000)", True),
        ("not not revenue gt 2000", False),
        ("((((numberofemployees eq 40))))", True),
    ],
)
def test_filter_matches_rows_like_dataverse(text: str, expected: bool) -> None:
    assert parse_filter(text, ACCOUNTS)(ROW) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Syntax error at position 0 in ''."),
        ("name eq", "Syntax error at position 7 in 'name eq'."),
        ("name eq 'x' and", "Syntax error at position 15"),
        ("name equals 'x'", "Syntax error at position 5"),
        ("(name eq 'x'", "Syntax error at position 12"),
        ("name eq 'x')", "Syntax error at position 11"),
        ("name eq 'unterminated", "Syntax error at position 8"),
        ("name eq 'x' # comment", "Syntax error at position 12"),
        (
            "colour eq 'red'",
            "Could not find a property named 'colour' on type 'Microsoft.Dynamics.CRM.account'.",
        ),
        ("modifiedon gt '2026-01-01'", "incompatible types"),
        ("revenue eq 'a lot'", "operand types 'Edm.Decimal' and 'Edm.String' for operator kind 'Equal'"),
        ("_ownerid_value eq 'abc'", "incompatible types"),
        ("modifiedon gt 2026-02-30T00:00:00Z", "is not a valid date and time"),
        ("contains(name, 'x')", "does not support the function 'contains'"),
        ("(" * 60 + "revenue gt 1" + ")" * 60, "nests deeper than"),
        ("revenue gt 1 and " * 600 + "revenue gt 1", "longer than"),
    ],
)
def test_bad_filters_raise_the_typed_error(text: str, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filter(text, ACCOUNTS)
    assert message in raised.value.message
    assert (raised.value.status, raised.value.code) == (400, "0x80060888")


def _parses_or_raises_filter_error(text: str) -> None:
    try:
        predicate = parse_filter(text, ACCOUNTS)
    except FilterError:
        return
    assert predicate(ROW) in (True, False)


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_filter_error(text: str) -> None:
    _parses_or_raises_filter_error(text)


_TOKENS = st.sampled_from(
    ["name", "revenue", "modifiedon", "fax", "eq", "gt", "le", "and", "or", "not", "(", ")", "null", "true",
     "'x'", "''''", "12", "-3.5", "2026-01-01T00:00:00Z", OWNER, "_ownerid_value", "donotemail", " "]
)  # fmt: skip


@given(st.lists(_TOKENS, max_size=30))
def test_near_miss_token_soup_parses_or_raises_filter_error(tokens: list[str]) -> None:
    _parses_or_raises_filter_error(" ".join(tokens))


# Expressions generated as trees, rendered with as few parentheses as precedence allows, and
# evaluated by a plain reference implementation.
_COMPARISONS = st.one_of(
    st.tuples(st.just("name"), st.sampled_from(["eq", "ne", "lt", "gt"]), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("numberofemployees"), st.sampled_from(["eq", "ge", "le"]), st.integers(-3, 3)),
    st.tuples(
        st.just("modifiedon"),
        st.sampled_from(["lt", "ge"]),
        st.datetimes(datetime(2025, 12, 31), datetime(2026, 1, 3), timezones=st.just(UTC)).map(
            lambda moment: moment.replace(microsecond=0)
        ),
    ),
)
_TREES = st.recursive(
    _COMPARISONS,
    lambda children: st.one_of(
        st.tuples(st.just("not"), children),
        st.tuples(st.sampled_from(["and", "or"]), children, children),
    ),
    max_leaves=12,
)
_ROWS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "B", "c", None]),
        "numberofemployees": st.one_of(st.none(), st.integers(-3, 3)),
        "modifiedon": st.datetimes(datetime(2025, 12, 31), datetime(2026, 1, 3), timezones=st.just(UTC)).map(
            lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
    }
)
_OPS = {"eq": "__eq__", "ne": "__ne__", "lt": "__lt__", "gt": "__gt__", "ge": "__ge__", "le": "__le__"}


def _render(tree: tuple[Any, ...]) -> str:
    head = tree[0]
    if head == "not":
        inner = _render(tree[1])
        return f"not ({inner})" if tree[1][0] in ("and", "or") else f"not {inner}"
    if head in ("and", "or"):
        parts = [_render(child) for child in tree[1:]]
        if head == "and":
            parts = [
                f"({part})" if child[0] == "or" else part for part, child in zip(parts, tree[1:], strict=True)
            ]
        return f" {head} ".join(parts)
    column, op, value = tree
    if isinstance(value, datetime):
        return f"{column} {op} {value.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return f"{column} {op} {value!r}"  # 'a' or 3


def _evaluate(tree: tuple[Any, ...], row: dict[str, Any]) -> bool:
    head = tree[0]
    if head == "not":
        return not _evaluate(tree[1], row)
    if head == "and":
        return _evaluate(tree[1], row) and _evaluate(tree[2], row)
    if head == "or":
        return _evaluate(tree[1], row) or _evaluate(tree[2], row)
    column, op, value = tree
    found = row[column]
    if found is None:
        return False
    if column == "name":
        found, value = found.lower(), value.lower()
    if column == "modifiedon":
        found = datetime.fromisoformat(found)
    return bool(getattr(found, _OPS[op])(value))


@given(_TREES, _ROWS)
def test_generated_expressions_evaluate_like_a_reference(
    tree: tuple[Any, ...], columns: dict[str, Any]
) -> None:
    text = _render(tree)
    assert parse_filter(text, ACCOUNTS)(account(**columns)) is _evaluate(tree, columns), text
