"""Cloud Elements hub URLs and their CEQL where clauses, translated into Dataverse OData `$filter`.

A poller URL such as `/hubs/crm/accounts?where=modifiedon >'2020-01-02T03:04:05Z'` (after template
rendering) becomes the `accounts` entity set filtered by `modifiedon gt 2020-01-02T03:04:05Z`;
`?where=fetchChanges='true'` asks for Dataverse change tracking instead of a filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from urllib.parse import unquote

from gateway.errors import ConfigError

__all__ = [
    "CeqlError",
    "ChangeTracking",
    "HubQuery",
    "HubUrlError",
    "ODataFilter",
    "parse_hub_url",
    "translate_where",
]


class CeqlError(ConfigError, ValueError):
    """A where clause is malformed or uses CEQL that has no OData equivalent."""

    def __init__(self, message: str, *, where: str, position: int) -> None:
        self.where = where
        self.position = position
        super().__init__(message)


class HubUrlError(ConfigError, ValueError):
    """A poller URL is not of the form `/hubs/<hub>/<resource>[?where=...]`."""

    def __init__(self, message: str, *, url: str) -> None:
        self.url = url
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ODataFilter:
    expression: str  # not percent-encoded: the HTTP client encodes it as the `$filter` value


@dataclass(frozen=True, slots=True)
class ChangeTracking:
    """`fetchChanges='true'`: poll with Dataverse change tracking (a delta link) instead of a filter."""


@dataclass(frozen=True, slots=True)
class HubQuery:
    hub: str
    resource: str
    where: str | None  # None when the URL has no `where` parameter


def translate_where(where: str) -> ODataFilter | ChangeTracking:
    if _FETCH_CHANGES.fullmatch(where):
        return ChangeTracking()
    return ODataFilter(_Parser(where).parse())


def parse_hub_url(url: str) -> HubQuery:
    """Split a rendered poller URL into hub, resource and the raw (decoded) where clause.

    Poller URLs are written by hand and rarely encoded: `where` runs to the first `&` outside
    single quotes, and is percent-decoded only when it contains `%XX` escapes.
    """
    path, has_query, query = url.partition("?")
    match = _HUB_PATH.fullmatch(path)
    if match is None:
        raise HubUrlError(f"{url!r} is not of the form /hubs/<hub>/<resource>[?where=...]", url=url)
    where: str | None = None
    for parameter in _PARAMETER.findall(query) if has_query else ():
        key, _, value = parameter.partition("=")
        if key != "where":
            continue
        if where is not None:
            raise HubUrlError(f"{url!r} has more than one where parameter", url=url)
        where = unquote(value) if _PERCENT_ESCAPE.search(value) else value
    return HubQuery(hub=match[1], resource=match[2], where=where)


_HUB_PATH = re.compile(r"/hubs/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)")
# A query parameter: quoted runs (which may hold `&`, and end early only when unterminated) or
# any other character but `&`.
_PARAMETER = re.compile(r"(?:'(?:[^'\\]|\\.)*+'?|[^&'])+", re.DOTALL)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_FETCH_CHANGES = re.compile(r"\s*fetchChanges\s*=\s*(?:'true'|\"true\")\s*", re.IGNORECASE)


class _Kind(Enum):
    NAME = "name"
    STRING = "string"
    NUMBER = "number"
    OPERATOR = "operator"
    OPEN = "("
    CLOSE = ")"
    END = "end of input"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # as written, quotes and escapes included
    position: int

    def describe(self) -> str:
        return "end of input" if self.kind is _Kind.END else repr(self.text)


_VISIBLE = re.compile(r"\S")
# A string escapes its quote as '' or \' and a backslash as \\; possessive, so an unterminated
# string fails at once instead of backtracking over every doubled quote.
_LEXICON = (
    (_Kind.STRING, re.compile(r"'(?:[^'\\]|''|\\.)*+'", re.DOTALL)),
    (_Kind.NUMBER, re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")),
    (_Kind.NAME, re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")),
    (_Kind.OPERATOR, re.compile(r"<>|<=|>=|!=|=|<|>")),
    (_Kind.OPEN, re.compile(r"\(")),
    (_Kind.CLOSE, re.compile(r"\)")),
)
_STRING_ESCAPE = re.compile(r"''|\\['\\]")
_OPERATORS = {"=": "eq", "!=": "ne", "<>": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le"}
_KEYWORDS = frozenset({"AND", "OR", "NOT", "TRUE", "FALSE", "NULL"})
_UNSUPPORTED_OPERATORS = frozenset({"LIKE", "ILIKE", "IN", "NOT", "BETWEEN", "IS", "CONTAINS"})
# ISO 8601 date-times that OData takes as unquoted Edm.DateTimeOffset literals.
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)

# How tightly a rendered expression binds; a child binding looser than its parent is parenthesized.
_OR, _AND, _ATOM = 1, 2, 3


@dataclass(frozen=True, slots=True)
class _Expression:
    text: str
    binding: int

    def within(self, binding: int) -> str:
        return self.text if self.binding >= binding else f"({self.text})"


class _Parser:
    """Recursive descent over the grammar, rendering OData as it goes:

    or := and (OR and)*    and := not (AND not)*    not := NOT not | '(' or ')' | NAME OP literal
    """

    def __init__(self, where: str) -> None:
        self._where = where
        self._end = 0  # where the lookahead token ends
        self._token = self._lex()

    def parse(self) -> str:
        expression = self._or()
        token = self._token
        if token.kind is _Kind.CLOSE:
            raise self._error("unmatched ')'", token.position)
        if token.kind is not _Kind.END:
            raise self._expected("AND or OR", token)
        return expression.text

    def _or(self) -> _Expression:
        operands = [self._and()]
        while self._at_keyword("OR"):
            self._advance()
            operands.append(self._and())
        if len(operands) == 1:
            return operands[0]
        return _Expression(" or ".join(operand.within(_OR) for operand in operands), _OR)

    def _and(self) -> _Expression:
        operands = [self._not()]
        while self._at_keyword("AND"):
            self._advance()
            operands.append(self._not())
        if len(operands) == 1:
            return operands[0]
        return _Expression(" and ".join(operand.within(_AND) for operand in operands), _AND)

    def _not(self) -> _Expression:
        if self._at_keyword("NOT"):
            self._advance()
            # OData's `not` binds tighter than `eq`, so its operand always needs parentheses.
            return _Expression(f"not ({self._not().text})", _ATOM)
        opening = self._token
        if opening.kind is not _Kind.OPEN:
            return self._comparison()
        self._advance()
        inner = self._or()
        if self._token.kind is _Kind.END:
            raise self._error("unclosed '('", opening.position)
        if self._token.kind is not _Kind.CLOSE:
            raise self._expected("')', AND or OR", self._token)
        self._advance()
        return inner

    def _comparison(self) -> _Expression:
        name = self._token
        if name.kind is not _Kind.NAME or name.text.upper() in _KEYWORDS:
            raise self._expected("a field name", name)
        if name.text.casefold() == "fetchchanges":
            raise self._error("fetchChanges='true' must be the whole where clause", name.position)
        if "." in name.text:
            raise self._error(f"unsupported dotted field name {name.text!r}", name.position)
        operator = self._advance()
        if operator.kind is _Kind.OPEN:
            raise self._error(f"unsupported function {name.text!r}", name.position)
        if operator.kind is _Kind.NAME and operator.text.upper() in _UNSUPPORTED_OPERATORS:
            raise self._error(f"unsupported operator {operator.text.upper()!r}", operator.position)
        if operator.kind is not _Kind.OPERATOR:
            raise self._expected("a comparison operator", operator)
        self._advance()
        return _Expression(f"{name.text} {_OPERATORS[operator.text]} {self._literal()}", _ATOM)

    def _literal(self) -> str:
        token = self._token
        word = token.text.upper() if token.kind is _Kind.NAME else ""
        if token.kind is _Kind.STRING:
            self._advance()
            return self._string(token)
        if token.kind is _Kind.NUMBER:
            self._advance()
            return token.text
        if word in ("TRUE", "FALSE", "NULL"):
            self._advance()
            return word.lower()
        if word and word not in _KEYWORDS:
            if self._advance().kind is _Kind.OPEN:
                raise self._error(f"unsupported function {token.text!r}", token.position)
            raise self._error(f"expected a value but found the field {token.text!r}", token.position)
        raise self._expected("a value", token)

    def _string(self, token: _Token) -> str:
        value = _STRING_ESCAPE.sub(lambda escape: escape[0][-1], token.text[1:-1])
        if not _DATETIME.fullmatch(value):
            return "'" + value.replace("'", "''") + "'"
        try:
            datetime.fromisoformat(value)
        except ValueError as exc:
            raise self._error(f"invalid date-time {value!r}", token.position) from exc
        return value

    def _at_keyword(self, keyword: str) -> bool:
        return self._token.kind is _Kind.NAME and self._token.text.upper() == keyword

    def _advance(self) -> _Token:
        """Move past the lookahead token; return the new one."""
        self._token = self._lex()
        return self._token

    def _lex(self) -> _Token:
        visible = _VISIBLE.search(self._where, self._end)
        if visible is None:
            return _Token(_Kind.END, "", len(self._where))
        position = visible.start()
        for kind, pattern in _LEXICON:
            match = pattern.match(self._where, position)
            if match is not None:
                self._end = match.end()
                return _Token(kind, match[0], position)
        if self._where[position] == "'":
            raise self._error("unterminated string starting", position)
        raise self._error(f"unexpected character {self._where[position]!r}", position)

    def _expected(self, what: str, found: _Token) -> CeqlError:
        return self._error(f"expected {what} but found {found.describe()}", found.position)

    def _error(self, problem: str, position: int) -> CeqlError:
        return CeqlError(f"{problem} at position {position}", where=self._where, position=position)
