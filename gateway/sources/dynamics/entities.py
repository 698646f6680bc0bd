"""Which Dataverse table a hub resource reads, and that table's primary key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EntitySet:
    name: str  # the Web API's entity set, the last segment of `/api/data/v9.2/<name>`
    primary_key: str


# The resources the Cloud Elements element supported, under their hub names.
_KNOWN = {
    "accounts": EntitySet("accounts", "accountid"),
    "contacts": EntitySet("contacts", "contactid"),
    "leads": EntitySet("leads", "leadid"),
    "opportunities": EntitySet("opportunities", "opportunityid"),
    "tasks": EntitySet("tasks", "activityid"),
    "notes": EntitySet("annotations", "annotationid"),
    "activities": EntitySet("activitypointers", "activityid"),
}


def entity_set(resource: str, primary_key: str | None = None) -> EntitySet:
    """The entity set of a hub resource; `primary_key` (the resource's configured override) wins.

    A name outside the element's list is taken as the entity set of a custom table, whose primary key
    is guessed as the name without its final `s`, plus `id` (`cr123_projects` -> `cr123_projectid`): the
    convention for tables whose plural only adds an `s`. Configure `primary_key` for any other table.
    """
    known = _KNOWN.get(resource) or EntitySet(resource, resource.removesuffix("s") + "id")
    return EntitySet(known.name, primary_key) if primary_key else known
