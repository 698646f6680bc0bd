"""Display texts, as Dataverse adds them to rows for `Prefer: odata.include-annotations="..."`:
`<column>@OData.Community.Display.V1.FormattedValue` for option sets, booleans, money and lookups, and
`<lookup>@Microsoft.Dynamics.CRM.lookuplogicalname` for the table a lookup points to.

Option labels are Dataverse's defaults for the system columns and "Option <n>" for the others; a
lookup's name is that of the row it points to when the simulator holds it, else "<table> <id prefix>".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from gateway.sim._records import Kind, Row, TableSpec

FORMATTED_VALUE = "OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
_OPTION_SETS = frozenset({"statecode", "statuscode", "industrycode", "leadqualitycode", "prioritycode"})
_LABELS: Mapping[str, Mapping[int, str]] = {
    "statecode": {0: "Active", 1: "Inactive"},
    "statuscode": {1: "Active", 2: "Inactive"},
    "prioritycode": {0: "Low", 1: "Normal", 2: "High"},
    "leadqualitycode": {1: "Hot", 2: "Warm", 3: "Cold"},
}
# The table each lookup of the simulated tables points to.
_LOOKUP_TABLES = {
    "_primarycontactid_value": "contact",
    "_parentcustomerid_value": "account",
    "_parentaccountid_value": "account",
    "_customerid_value": "account",
    "_regardingobjectid_value": "account",
    "_objectid_value": "account",
    "_ownerid_value": "systemuser",
    "_createdby_value": "systemuser",
    "_modifiedby_value": "systemuser",
}
_MONEY = frozenset({"revenue", "estimatedvalue", "actualvalue"})

NameOf = Callable[[str, str], str | None]  # (logical name of a table, row id) -> the row's name


def wanted(terms: Collection[str]) -> tuple[bool, bool]:
    """Whether `odata.include-annotations` asks for formatted values, and for lookup logical names."""
    every = "*" in terms
    return every or FORMATTED_VALUE in terms, every or LOOKUP_LOGICAL_NAME in terms


def annotate(row: Row, spec: TableSpec, terms: Collection[str], name_of: NameOf) -> Row:
    """A copy of `row` with the annotations `terms` asks for, next to their columns."""
    formatted, logical = wanted(terms)
    annotated = dict(row)
    for column, value in row.items():
        if value is None or column.startswith("@"):
            continue
        table = _LOOKUP_TABLES.get(column)
        if table is not None:
            if logical:
                annotated[f"{column}@{LOOKUP_LOGICAL_NAME}"] = table
            if formatted:
                name = name_of(table, value) or f"{table} {str(value)[:8]}"
                annotated[f"{column}@{FORMATTED_VALUE}"] = name
        elif formatted and (text := _display(column, value, spec.columns.get(column))) is not None:
            annotated[f"{column}@{FORMATTED_VALUE}"] = text
    return annotated


def _display(column: str, value: Any, kind: Kind | None) -> str | None:
    if column in _OPTION_SETS:
        return _LABELS.get(column, {}).get(value, f"Option {value}")
    if kind is Kind.BOOL:
        return "Yes" if value else "No"
    if column in _MONEY:
        return f"${value:,.2f}"
    return None
