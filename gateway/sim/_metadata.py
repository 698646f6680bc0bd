"""Table definitions, as Dataverse's `EntityDefinitions` answers the one query the gateway makes:
`EntityDefinitions?$filter=EntitySetName eq '<set>'&$select=LogicalName`
`&$expand=Attributes($select=LogicalName)`.

A lookup column appears in rows as `_<name>_value` and in the definition under its logical name `<name>`,
as in Dataverse. Definitions carry a `MetadataId` derived from the name, so they are stable across runs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from multidict import MultiMapping

from gateway.sim._errors import QUERY_ERROR, ServiceError
from gateway.sim._records import TableSpec

_ENTITY_SET_FILTER = re.compile(r"\s*EntitySetName\s+eq\s+'([^']*)'\s*")
_LOOKUP = re.compile(r"_(\w+)_value")
_NAMESPACE = uuid.UUID("6f1c64b4-9d1f-4cf0-8a55-2f3b8b0e6a11")


def entity_definitions(tables: Mapping[str, TableSpec], query: MultiMapping[str]) -> dict[str, Any]:
    """The body of `GET EntityDefinitions` filtered by entity set name, with the tables' attributes."""
    text = query.get("$filter")
    matched = _ENTITY_SET_FILTER.fullmatch(text) if text is not None else None
    if matched is None:
        raise ServiceError(
            400,
            QUERY_ERROR,
            "The simulator answers EntityDefinitions filtered by EntitySetName eq '<set>' only.",
        )
    spec = tables.get(matched.group(1))
    return {"value": [] if spec is None else [_definition(spec)]}


def _definition(spec: TableSpec) -> dict[str, Any]:
    names = sorted({_logical_name(column) for column in spec.columns})
    return {
        "LogicalName": spec.entity_type,
        "EntitySetName": spec.entity_set,
        "MetadataId": _metadata_id(spec.entity_type),
        "Attributes": [
            {"LogicalName": name, "MetadataId": _metadata_id(f"{spec.entity_type}.{name}")} for name in names
        ],
    }


def _logical_name(column: str) -> str:
    lookup = _LOOKUP.fullmatch(column)
    return column if lookup is None else lookup.group(1)


def _metadata_id(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))
