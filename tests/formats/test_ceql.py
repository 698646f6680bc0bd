from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.formats.ceql import (
    CeqlError,
    ChangeTracking,
    HubQuery,
    HubUrlError,
    ODataFilter,
    parse_hub_url,
    translate_where,
)
from gateway.formats.templates import compile_template

# ---- the seed's two URL forms ----------------------------------------------------------------


def test_seed_change_tracking_url() -> None:
    query = parse_hub_url("/hubs/crm/accounts?where=fetchChanges='true'")
    assert query == HubQuery(hub="crm", resource="accounts", where="fetchChanges='true'")
    assert translate_where("fetchChanges='true'") == ChangeTracking()


def test_seed_template_url_after_rendering() -> None:
    template = compile_template("/hubs/crm/contacts?where=modifiedon >'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'")
    url = template.render(datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), ZoneInfo("UTC"))
    query = parse_hub_url(url)
    assert query == HubQuery(hub="crm", resource="contacts", where="modifiedon >'2020-01-02T03:04:05Z'")
    assert translate_where("modifiedon >'2020-01-02T03:04:05Z'") == ODataFilter(
        "modifiedon gt 2020-01-02T03:04:05Z"
    )


def test_seed_template_url_before_rendering() -> None:
    query = parse_hub_url("/hubs/crm/leads?where=modifiedon >'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'")
    assert query.where == "modifiedon >'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'"


@pytest.mark.parametrize(
    "where",
    ["fetchChanges='true'", "  fetchChanges = 'true'  ", 'fetchChanges="true"', "FETCHCHANGES='TRUE'"],
)
def test_change_tracking_forms(where: str) -> None:
    assert translate_where(where) == ChangeTracking()


# ---- operators, precedence, literals ---------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "odata"),
    [("=", "eq"), ("!=", "ne"), ("<>", "ne"), (">", "gt"), (">=", "ge"), ("<", "lt"), ("<=", "le")],
)
def test_operators(operator: str, odata: str) -> None:
    assert translate_where(f"revenue{operator}5") == ODataFilter(f"revenue {odata} 5")
    assert translate_where(f"  revenue  {operator}  5  ") == ODataFilter(f"revenue {odata} 5")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("a=1 AND b=2", "a eq 1 and b eq 2"),
        ("a=1 and b=2 Or c=3", "a eq 1 and b eq 2 or c eq 3"),
        ("a=1 OR b=2 AND c=3", "a eq 1 or b eq 2 and c eq 3"),
        ("(a=1 OR b=2) AND c=3", "(a eq 1 or b eq 2) and c eq 3"),
        ("a=1 AND (b=2 OR c=3) AND d=4", "a eq 1 and (b eq 2 or c eq 3) and d eq 4"),
        ("a=1 OR (b=2 AND c=3)", "a eq 1 or b eq 2 and c eq 3"),
        ("((a=1))", "a eq 1"),
        ("(a=1 OR b=2) OR (c=3)", "a eq 1 or b eq 2 or c eq 3"),
        ("NOT a=1", "not (a eq 1)"),
        ("not not a=1", "not (not (a eq 1))"),
        ("NOT (a=1 OR b=2) AND c=3", "not (a eq 1 or b eq 2) and c eq 3"),
        ("NOT a=1 OR b=2", "not (a eq 1) or b eq 2"),
        ("(a=1)AND(b=2)", "a eq 1 and b eq 2"),
    ],
)
def test_precedence_and_parentheses(where: str, expected: str) -> None:
    assert translate_where(where) == ODataFilter(expected)


@pytest.mark.parametrize(
    ("literal", "odata"),
    [
        ("'Acme'", "'Acme'"),
        ("'O''Brien'", "'O''Brien'"),
        ("'O\\'Brien'", "'O''Brien'"),
        ("'back\\\\slash'", "'back\\slash'"),
        ("'C:\\temp'", "'C:\\temp'"),  # a backslash before anything but a quote or backslash is kept
        ("''", "''"),
        ("''''", "''''"),
        ("'a AND b = (c)'", "'a AND b = (c)'"),
        ("'2020-01-01'", "'2020-01-01'"),  # dates without a time stay strings
        ("'2020-01-01T00:00:00Z'", "2020-01-01T00:00:00Z"),
        ("'2020-01-01T00:00:00.123Z'", "2020-01-01T00:00:00.123Z"),
        ("'2020-01-01T00:00:00+05:30'", "2020-01-01T00:00:00+05:30"),
        ("'2020-01-01T00:00:00.1234567-08:00'", "2020-01-01T00:00:00.1234567-08:00"),
        ("'2020-01-01T00:00'", "2020-01-01T00:00"),
        ("'2020-01-01T00:00:00'", "2020-01-01T00:00:00"),
        ("'x2020-01-01T00:00:00Z'", "'x2020-01-01T00:00:00Z'"),
        ("42", "42"),
        ("-42", "-42"),
        ("2.5", "2.5"),
        ("1e3", "1e3"),
        ("true", "true"),
        ("FALSE", "false"),
        ("Null", "null"),
    ],
)
def test_literals(literal: str, odata: str) -> None:
    assert translate_where(f"name = {literal}") == ODataFilter(f"name eq {odata}")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("name LIKE 'A%'", "unsupported operator 'LIKE' at position 5"),
        ("name like 'A%'", "unsupported operator 'LIKE' at position 5"),
        ("id IN (1, 2)", "unsupported operator 'IN' at position 3"),
        ("id NOT IN (1, 2)", "unsupported operator 'NOT' at position 3"),
        ("x BETWEEN 1 AND 2", "unsupported operator 'BETWEEN' at position 2"),
        ("x IS NULL", "unsupported operator 'IS' at position 2"),
        ("contains(name, 'a')", "unsupported function 'contains' at position 0"),
        ("name = lower('A')", "unsupported function 'lower' at position 7"),
        ("attributes.modifiedon > 1", "unsupported dotted field name 'attributes.modifiedon' at position 0"),
        ("x =", "expected a value but found end of input at position 3"),
        ("x = AND y = 1", "expected a value but found 'AND' at position 4"),
        ("= 1", "expected a field name but found '=' at position 0"),
        ("1 = x", "expected a field name but found '1' at position 0"),
        ("x = 1 AND", "expected a field name but found end of input at position 9"),
        ("x 1", "expected a comparison operator but found '1' at position 2"),
        ("x == 1", "expected a value but found '=' at position 3"),
        ("x = y", "expected a value but found the field 'y' at position 4"),
        ("(x = 1", "unclosed '(' at position 0"),
        ("((x = 1) AND y = 2", "unclosed '(' at position 0"),
        ("x = 1)", "unmatched ')' at position 5"),
        ("(x = 1 y = 2)", "expected ')', AND or OR but found 'y' at position 7"),
        ("()", "expected a field name but found ')' at position 1"),
        ("x = 'abc", "unterminated string starting at position 4"),
        ("x = 'it''s", "unterminated string starting at position 4"),
        ("x = 'a\\'", "unterminated string starting at position 4"),
        ("x = 1 garbage", "expected AND or OR but found 'garbage' at position 6"),
        ("x = 1; DROP TABLE", "unexpected character ';' at position 5"),
        ('x = "a"', "unexpected character '\"' at position 4"),
        ("x = 'a' && y = 1", "unexpected character '&' at position 8"),
        ("x = @p", "unexpected character '@' at position 4"),
        ("", "expected a field name but found end of input at position 0"),
        ("   ", "expected a field name but found end of input at position 3"),
        ("fetchChanges='true' AND x=1", "fetchChanges='true' must be the whole where clause at position 0"),
        ("x=1 OR fetchChanges='true'", "fetchChanges='true' must be the whole where clause at position 7"),
        ("fetchChanges='false'", "fetchChanges='true' must be the whole where clause at position 0"),
        ("t > '2020-13-01T00:00:00Z'", "invalid date-time '2020-13-01T00:00:00Z' at position 4"),
    ],
)
def test_untranslatable(where: str, message: str) -> None:
    with pytest.raises(CeqlError) as caught:
        translate_where(where)
    assert str(caught.value) == message
    assert caught.value.where == where
    assert message.endswith(f" at position {caught.value.position}")


def test_errors_are_config_errors() -> None:
    assert issubclass(CeqlError, ConfigError)
    assert issubclass(CeqlError, ValueError)
    assert issubclass(HubUrlError, ConfigError)
    assert issubclass(HubUrlError, ValueError)


# ---- hub URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/hubs/crm/accounts", HubQuery("crm", "accounts", None)),
        ("/hubs/crm/accounts?", HubQuery("crm", "accounts", None)),
        ("/hubs/crm/accounts?pageSize=10", HubQuery("crm", "accounts", None)),
        ("/hubs/crm/accounts?where=", HubQuery("crm", "accounts", "")),
        ("/hubs/crm/accounts?where=a=1&pageSize=10", HubQuery("crm", "accounts", "a=1")),
        ("/hubs/crm/accounts?pageSize=10&where=a=1", HubQuery("crm", "accounts", "a=1")),
        ("/hubs/crm/accounts?where=name='A&B'&x=1", HubQuery("crm", "accounts", "name='A&B'")),
        ("/hubs/crm/accounts?where=name='A''&''B'", HubQuery("crm", "accounts", "name='A''&''B'")),
        ("/hubs/crm/accounts?where=name='A\\'&B'", HubQuery("crm", "accounts", "name='A\\'&B'")),
        ("/hubs/crm/accounts?where=name='A&B", HubQuery("crm", "accounts", "name='A&B")),
        ("/hubs/crm/accounts?where=a%20%3D%201", HubQuery("crm", "accounts", "a = 1")),
        (
            "/hubs/crm/accounts?where=t>'2020-01-01T00:00:00+05:30'",
            HubQuery("crm", "accounts", "t>'2020-01-01T00:00:00+05:30'"),
        ),
        ("/hubs/crm/accounts?where=a=100%", HubQuery("crm", "accounts", "a=100%")),  # no %XX: left alone
        ("/hubs/marketing-v2/my_objects?where=x=1", HubQuery("marketing-v2", "my_objects", "x=1")),
    ],
)
def test_parse_hub_url(url: str, expected: HubQuery) -> None:
    assert parse_hub_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "/hubs/crm",
        "/hubs/crm/",
        "hubs/crm/accounts",
        "/hubs/crm/accounts/",
        "/hubs/crm/accounts/123",
        "/hubs//accounts",
        "https://api.cloud-elements.com/elements/api-v2/hubs/crm/accounts",
        "/hubs/crm/acc ounts?where=a=1",
    ],
)
def test_parse_hub_url_rejects_other_urls(url: str) -> None:
    with pytest.raises(
        HubUrlError, match=r"is not of the form /hubs/<hub>/<resource>\[\?where=\.\.\.\]"
    ) as caught:
        parse_hub_url(url)
    assert caught.value.url == url


def test_parse_hub_url_rejects_two_where_parameters() -> None:
    with pytest.raises(HubUrlError, match="more than one where parameter"):
        parse_hub_url("/hubs/crm/accounts?where=a=1&where=b=2")


# ---- properties: random CEQL trees -----------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    field: str
    operator: str  # OData spelling
    literal: str  # OData spelling
    ceql_literal: str


@dataclass(frozen=True)
class Junction:
    operator: str  # "and" | "or"
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Comparison | Junction | Not

CEQL_OPERATORS = {"eq": ["="], "ne": ["!=", "<>"], "gt": [">"], "ge": [">="], "lt": ["<"], "le": ["<="]}
RESERVED = {"and", "or", "not", "true", "false", "null", "like", "in", "between", "is", "fetchchanges"}
FIELDS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda name: name.lower() not in RESERVED
)


@st.composite
def string_literals(draw: st.DrawFn) -> tuple[str, str]:
    """(CEQL, OData) spellings of a string that is not a date-time."""
    value = draw(st.text().filter(lambda text: not re.match(r"[0-9]{4}-", text)))
    escaped_quote = draw(st.sampled_from(["''", "\\'"]))
    ceql = "'" + value.replace("\\", "\\\\").replace("'", escaped_quote) + "'"
    return ceql, "'" + value.replace("'", "''") + "'"


@st.composite
def datetime_literals(draw: st.DrawFn) -> tuple[str, str]:
    offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
    moment = draw(st.datetimes(timezones=offsets))
    text = moment.isoformat(
        timespec=draw(st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds"]))
    )
    if draw(st.booleans()):
        text = text.replace("+00:00", "Z")
    return f"'{text}'", text


NUMBERS = st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?", fullmatch=True).map(
    lambda n: (n, n)
)
KEYWORD_LITERALS = st.sampled_from(["true", "false", "null"]).flatmap(
    lambda word: st.sampled_from([word, word.upper(), word.title()]).map(lambda spelled: (spelled, word))
)


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    ceql_literal, odata_literal = draw(
        st.one_of(string_literals(), datetime_literals(), NUMBERS, KEYWORD_LITERALS)
    )
    return Comparison(
        draw(FIELDS), draw(st.sampled_from(sorted(CEQL_OPERATORS))), odata_literal, ceql_literal
    )


TREES: st.SearchStrategy[Node] = st.recursive(
    comparisons(),
    lambda children: st.one_of(
        st.builds(
            Junction, st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=4).map(tuple)
        ),
        st.builds(Not, children),
    ),
    max_leaves=12,
)

BINDING = {"or": 1, "and": 2}


def to_ceql(data: st.DataObject, node: Node, parent_binding: int) -> str:
    """Render with the parentheses precedence needs, some superfluous ones, and random spelling."""
    draw = data.draw
    space = draw(st.sampled_from([" ", "  ", "\t", "\n "]))
    if isinstance(node, Comparison):
        operator = draw(st.sampled_from(CEQL_OPERATORS[node.operator]))
        text = (
            node.field
            + draw(st.sampled_from(["", " "]))
            + operator
            + draw(st.sampled_from(["", " "]))
            + node.ceql_literal
        )
        binding = 3
    elif isinstance(node, Not):
        text = draw(st.sampled_from(["NOT", "not", "Not"])) + space + to_ceql(data, node.operand, 3)
        binding = 3
    else:
        binding = BINDING[node.operator]
        keyword = draw(st.sampled_from([node.operator, node.operator.upper()]))
        text = (space + keyword + space).join(to_ceql(data, operand, binding) for operand in node.operands)
    if binding < parent_binding or draw(st.integers(0, 5)) == 0:
        return "(" + draw(st.sampled_from(["", " "])) + text + draw(st.sampled_from(["", " "])) + ")"
    return text


def normalise(node: Node) -> object:
    """The tree as nested tuples, with `a and (b and c)` flattened to `a and b and c`."""
    if isinstance(node, Comparison):
        return ("cmp", node.field, node.operator, node.literal)
    if isinstance(node, Not):
        return ("not", normalise(node.operand))
    operands: list[object] = []
    for operand in node.operands:
        child = normalise(operand)
        if isinstance(child, tuple) and child[0] == node.operator:
            operands.extend(child[1])
        else:
            operands.append(child)
    return (node.operator, tuple(operands))


ODATA_TOKEN = re.compile(r"\s*('(?:[^']|'')*'|\(|\)|[^\s()]+)")


def parse_odata(expression: str) -> object:
    """A small, independent OData $filter reader: or < and < not, comparisons `name op literal`."""
    tokens: list[str] = ODATA_TOKEN.findall(expression)
    position = 0

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def junction(operator: str, operand: object) -> object:
        operands = [read(operand)]
        while peek() == operator:
            take()
            operands.append(read(operand))
        return operands[0] if len(operands) == 1 else (operator, tuple(operands))

    def read(level: object) -> object:
        if level == "or":
            return junction("or", "and")
        if level == "and":
            return junction("and", "not")
        if peek() == "not":
            take()
            return ("not", read("not"))
        if peek() == "(":
            take()
            inner = read("or")
            assert take() == ")"
            return inner
        return ("cmp", take(), take(), take())

    tree = read("or")
    assert position == len(tokens), expression
    return tree


@given(st.data(), TREES)
def test_translation_preserves_the_tree(data: st.DataObject, tree: Node) -> None:
    ceql = to_ceql(data, tree, 0)
    translated = translate_where(ceql)
    assert isinstance(translated, ODataFilter)
    assert parse_odata(translated.expression) == normalise(tree)


CEQL_PIECES = st.sampled_from(
    [
        "a",
        "b1",
        "_x",
        "a.b",
        "AND",
        "or",
        "NOT",
        "LIKE",
        "in",
        "=",
        "!=",
        "<>",
        ">",
        ">=",
        "<",
        "<=",
        "(",
        ")",
        "'s'",
        "'",
        "''",
        "\\'",
        "1",
        "-2.5",
        "1e",
        "true",
        "null",
        " ",
        "fetchChanges",
        "'true'",
        '"',
        "f(",
        "%",
    ]
)


@given(st.one_of(st.text(), st.lists(CEQL_PIECES).map("".join)))
def test_translate_raises_only_ceql_error(where: str) -> None:
    try:
        translate_where(where)
    except CeqlError as error:
        failure = error
    else:
        return
    assert str(failure).endswith(f" at position {failure.position}")
    assert 0 <= failure.position <= len(where)


@given(
    st.one_of(
        st.text(),
        st.lists(CEQL_PIECES | st.sampled_from(["/hubs/", "crm/", "x", "?", "&", "where="])).map("".join),
    )
)
def test_parse_hub_url_raises_only_hub_url_error(url: str) -> None:
    try:
        query = parse_hub_url(url)
    except HubUrlError:
        return
    assert url.startswith(f"/hubs/{query.hub}/{query.resource}")
