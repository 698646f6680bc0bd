"""Instance bodies for the benchmarks: Dynamics instances pointed at a simulator on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gateway.sim import DEMO_USERS

RESOURCES = ("accounts", "contacts", "opportunities", "leads", "tasks", "notes", "activities")
SIGNATURE_KEY = "bench-signature-key-0123456789abcdef"
_FILTER_URL = "/hubs/crm/{}?where=modifiedon >'${{gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}}'"
_DATES = {
    "updatedDateField": "attributes.modifiedon",
    "updatedDateFormat": "milliseconds",
    "createdDateField": "attributes.createdon",
    "createdDateFormat": "milliseconds",
}


def instance_body(
    instance_id: str,
    sim_url: str,
    *,
    resources: tuple[str, ...] = RESOURCES,
    refresh_seconds: float = 60.0,
    snapshot: bool = False,
    page_size: int = 5000,
    callback_url: str | None = None,
    filtered: bool = False,
) -> dict[str, Any]:
    """A change-tracking instance (the seed's "Dynamics 2016 and later") polling `resources`, or with
    `filtered` one filtering on `modifiedon` (the seed's "earlier" versions)."""
    user, password = next(iter(DEMO_USERS.items()))
    poller: dict[str, Any] = {}
    for resource in resources:
        config: dict[str, Any] = {
            "url": _FILTER_URL.format(resource)
            if filtered
            else f"/hubs/crm/{resource}?where=fetchChanges='true'",
            "idField": "id",
            "pageSize": page_size,
            "datesConfiguration": dict(_DATES),
        }
        if snapshot:
            config["snapshot"] = True
        poller[resource] = config
    configuration: dict[str, Any] = {
        "user.username": user,
        "user.password": password,
        "dynamics.base.url": sim_url,
        "event.notification.enabled": "true",
        "event.poller.refresh_interval": repr(refresh_seconds / 60),
        "event.poller.configuration": poller,
    }
    if callback_url is not None:
        configuration["event.notification.callback.url"] = callback_url
        configuration["event.notification.signature.key"] = SIGNATURE_KEY
    return {
        "id": instance_id,
        "element": {"key": "dynamicscrmadfs"},
        "configuration": configuration,
        "tags": ["bench"],
        "name": f"bench-{instance_id}",
    }


def write_declared(path: Path, bodies: list[dict[str, Any]]) -> Path:
    """A declared-instances file for `event-gateway run --instances`."""
    path.write_bytes(orjson.dumps(bodies))
    return path
