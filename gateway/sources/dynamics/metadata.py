"""Which columns a Dataverse table has, from its definition (`EntityDefinitions`): a resource's `select`
naming a column the table lacks is refused when the instance is saved, instead of failing every poll."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from gateway.errors import SourceResponseError

_LOOKUP = re.compile(r"_(\w+)_value")


@dataclass(frozen=True, slots=True)
class TableColumns:
    entity_set: str
    names: frozenset[str]  # the attributes' logical names

    def has(self, column: str) -> bool:
        """Whether `$select` may name `column`: an attribute, or a lookup's `_<attribute>_value`."""
        if column in self.names:
            return True
        lookup = _LOOKUP.fullmatch(column)
        return lookup is not None and lookup.group(1) in self.names


def definition_path(entity_set: str) -> str:
    """The query of one table's definition with its attributes' names, relative to the API root."""
    name = quote(entity_set.replace("'", "''"), safe="")
    return (
        f"EntityDefinitions?$filter=EntitySetName%20eq%20'{name}'&$select=LogicalName"
        "&$expand=Attributes($select=LogicalName)"
    )


def read_definition(body: dict[str, Any], entity_set: str, url: str) -> TableColumns | None:
    """The columns an `EntityDefinitions` answer lists, or None when no table has that entity set."""
    definitions = body["value"]
    if not definitions:
        return None
    attributes = definitions[0].get("Attributes") if isinstance(definitions[0], dict) else None
    if not isinstance(attributes, list):
        raise SourceResponseError(f"{url}: the table definition has no Attributes list", url=url)
    names = frozenset(a["LogicalName"] for a in attributes if isinstance(a, dict) and "LogicalName" in a)
    return TableColumns(entity_set, names)
