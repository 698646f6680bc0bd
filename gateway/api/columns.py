"""The save-time check of each resource's `select` against its table's definition in Dataverse.

The validator knows the body only; whether `accounts` has a column `nmae` only the organisation knows.
So a save whose resources name columns reads each table's definition once per instance and connection
(kept, bounded, for later saves), and refuses an unknown column at its JSON path, as the validator
refuses its own problems. An organisation that cannot be asked (down, wrong password) does not block the
save: the check becomes a warning, and the poll reports Dataverse's own error if a column is wrong.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from gateway.errors import InstanceValidationError, Problem, SourceError
from gateway.instances import Instance, SourceConnection, child
from gateway.sources.dynamics.client import DynamicsSource
from gateway.sources.dynamics.entities import entity_set

_POLLER_PATH = "$.configuration['event.poller.configuration']"
_KEPT_SOURCES = 256


class ColumnCheck:
    """Refuses `select` columns the table's definition lacks. `source_for` makes the reader of one
    connection (the gateway's Dynamics source, with a short timeout and no retries)."""

    def __init__(self, source_for: Callable[[SourceConnection], DynamicsSource]) -> None:
        self._source_for = source_for
        self._sources: OrderedDict[tuple[str, SourceConnection], DynamicsSource] = OrderedDict()

    async def warnings(self, instance: Instance) -> tuple[Problem, ...]:
        """Raises InstanceValidationError naming each unknown column; returns the resources whose
        columns could not be checked, as warnings."""
        errors: list[Problem] = []
        warnings: list[Problem] = []
        for resource in instance.resources:
            if resource.select is None:
                continue
            path = child(child(_POLLER_PATH, resource.name), "select")
            try:
                columns = await self._source(instance).table_columns(resource)
            except SourceError as exc:
                warnings.append(Problem(path, f"not checked against the table's columns: {exc}"))
                continue
            if columns is None:
                table = entity_set(resource.object_type, resource.primary_key).name
                errors.append(Problem(path, f"the organisation has no table with entity set {table!r}"))
                continue
            errors.extend(
                Problem(child(path, index), f"table {columns.entity_set} has no column {column!r}")
                for index, column in enumerate(resource.select)
                if not columns.has(column)
            )
        if errors:
            raise InstanceValidationError(errors)
        return tuple(warnings)

    def _source(self, instance: Instance) -> DynamicsSource:
        key = (instance.id, instance.source)
        source = self._sources.get(key)
        if source is None:
            source = self._sources[key] = self._source_for(instance.source)
            while len(self._sources) > _KEPT_SOURCES:
                self._sources.popitem(last=False)
        self._sources.move_to_end(key)
        return source


COLUMN_CHECK = web.AppKey("column_check", ColumnCheck)
