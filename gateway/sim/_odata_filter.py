"""The OData `$filter` subset Dataverse clients use, compiled into a predicate over rows.

Grammar (recursive descent, lowest precedence first):

    expression := conjunction ("or" conjunction)*
    conjunction := unary ("and" unary)*
    unary       := "not" unary | "(" expression ")" | comparison
    comparison  := property ("eq" | "ne" | "gt" | "ge" | "lt" | "le") literal
    literal     := 'string' ('' escapes a quote) | number | 2026-01-01T00:00:00Z | 2026-01-01
                 | guid | true | false | null

The property's column type fixes which literals fit, as Dataverse checks them. Strings compare
case-insensitively, as SQL Server's default collation does. A null column satisfies only
`eq null` (and fails `ne null`); every other comparison with null is false, as in SQL.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.sim._errors import FilterError
from gateway.sim._records import Kind, TableSpec

Predicate = Callable[[Mapping[str, Any]], bool]

MAX_DEPTH = 50  # of nested parentheses and `not`s
MAX_LENGTH = 8_000

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<open>\()
    | (?P<close>\))
    | (?P<comma>,)
    | (?P<string>'(?:[^']|'')*')
    | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})(?![\w-])
    | (?P<datetime>\d{4}-\d{2}-\d{2}
        (?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2}))?)(?![\w:.+-])
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_OPERATORS: Mapping[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "eq": ("Equal", operator.eq),
    "ne": ("NotEqual", operator.ne),
    "gt": ("GreaterThan", operator.gt),
    "ge": ("GreaterThanOrEqual", operator.ge),
    "lt": ("LessThan", operator.lt),
    "le": ("LessThanOrEqual", operator.le),
}
_KEYWORDS = frozenset({"and", "or", "not", "null", "true", "false", *_OPERATORS})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # a group name of _TOKEN
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class _Literal:
    type_name: str  # the OData type the literal has on its own
    value: Any
    fits: frozenset[Kind]  # column kinds it may be compared with


_NULL = _Literal("null", None, frozenset(Kind))


def parse_filter(text: str, spec: TableSpec) -> Predicate:
    """Compile `text` for rows of `spec`'s table; raise FilterError if it is not valid there."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"The $filter expression is longer than {MAX_LENGTH} characters.")
    return _Parser(text, spec).parse()


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise FilterError(f"Syntax error at position {position} in '{text}'.")
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup, match.group(), position))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, spec: TableSpec) -> None:
        self._text = text
        self._spec = spec
        self._tokens = _tokenize(text)
        self._next = 0

    def parse(self) -> Predicate:
        predicate = self._expression(0)
        if self._next < len(self._tokens):
            raise self._fail(self._tokens[self._next].position)
        return predicate

    def _fail(self, position: int | None = None) -> FilterError:
        where = len(self._text) if position is None else position
        return FilterError(f"Syntax error at position {where} in '{self._text}'.")

    def _peek_word(self, *words: str) -> bool:
        if self._next >= len(self._tokens):
            return False
        token = self._tokens[self._next]
        return token.kind == "word" and token.text in words

    def _take(self) -> _Token:
        if self._next >= len(self._tokens):
            raise self._fail()
        token = self._tokens[self._next]
        self._next += 1
        return token

    def _expression(self, depth: int) -> Predicate:
        terms = [self._conjunction(depth)]
        while self._peek_word("or"):
            self._next += 1
            terms.append(self._conjunction(depth))
        if len(terms) == 1:
            return terms[0]
        return lambda row: any(term(row) for term in terms)

    def _conjunction(self, depth: int) -> Predicate:
        terms = [self._unary(depth)]
        while self._peek_word("and"):
            self._next += 1
            terms.append(self._unary(depth))
        if len(terms) == 1:
            return terms[0]
        return lambda row: all(term(row) for term in terms)

    def _unary(self, depth: int) -> Predicate:
        if depth >= MAX_DEPTH:
            raise FilterError(f"The $filter expression nests deeper than {MAX_DEPTH} levels.")
        if self._peek_word("not"):
            self._next += 1
            inner = self._unary(depth + 1)
            return lambda row: not inner(row)
        token = self._take()
        if token.kind == "open":
            inner = self._expression(depth + 1)
            if self._take().kind != "close":
                raise self._fail(self._tokens[self._next - 1].position)
            return inner
        return self._comparison(token)

    def _comparison(self, token: _Token) -> Predicate:
        if token.kind != "word" or token.text in _KEYWORDS:
            raise self._fail(token.position)
        column = token.text
        kind = self._spec.columns.get(column)
        if self._next < len(self._tokens) and self._tokens[self._next].kind == "open":
            raise FilterError(f"The simulator does not support the function '{column}' in $filter.")
        if kind is None:
            raise FilterError(
                f"Could not find a property named '{column}' on type '{self._spec.type_name()}'."
            )
        word = self._take()
        if word.kind != "word" or word.text not in _OPERATORS:
            raise self._fail(word.position)
        operator_name, compare = _OPERATORS[word.text]
        literal = self._literal(self._take())
        if kind not in literal.fits:
            raise FilterError(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{kind.value}' and '{literal.type_name}' for operator kind '{operator_name}'."
            )
        return _compile(column, kind, word.text, compare, literal.value)

    def _literal(self, token: _Token) -> _Literal:
        text = token.text
        if token.kind == "string":
            return _Literal("Edm.String", text[1:-1].replace("''", "'"), frozenset({Kind.STRING}))
        if token.kind == "guid":
            return _Literal("Edm.Guid", text.lower(), frozenset({Kind.GUID}))
        if token.kind == "number":
            is_integer = text.lstrip("-").isdigit()
            value = int(text) if is_integer else float(text)
            return _Literal(
                "Edm.Int32" if is_integer else "Edm.Decimal", value, frozenset({Kind.INT, Kind.DECIMAL})
            )
        if token.kind == "datetime":
            return _Literal(
                "Edm.DateTimeOffset", _parse_datetime(text, token.position), frozenset({Kind.DATETIME})
            )
        if token.kind == "word" and text in ("true", "false"):
            return _Literal("Edm.Boolean", text == "true", frozenset({Kind.BOOL}))
        if token.kind == "word" and text == "null":
            return _NULL
        raise self._fail(token.position)


def _parse_datetime(text: str, position: int) -> datetime:
    try:  # .NET writes seven digits of fractions; Python reads six
        moment = datetime.fromisoformat(re.sub(r"(\.\d{6})\d", r"\1", text))
    except ValueError:
        raise FilterError(
            f"The literal '{text}' at position {position} is not a valid date and time."
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _compile(column: str, kind: Kind, op: str, compare: Callable[[Any, Any], bool], value: Any) -> Predicate:
    if value is None:
        if op == "eq":
            return lambda row: row.get(column) is None
        if op == "ne":
            return lambda row: row.get(column) is not None
        return lambda row: False
    convert: Callable[[Any], Any]
    if kind is Kind.STRING:
        value, convert = value.casefold(), str.casefold
    elif kind is Kind.DATETIME:
        convert = datetime.fromisoformat  # stored values are always `YYYY-MM-DDTHH:MM:SSZ`
    elif kind is Kind.GUID:
        convert = str.lower
    else:
        return lambda row: (found := row.get(column)) is not None and compare(found, value)
    return lambda row: (found := row.get(column)) is not None and compare(convert(found), value)
