"""The Microsoft Dynamics 365 (Dataverse) source."""

from __future__ import annotations

from gateway.sources.dynamics.ceql import (
    CeqlError,
    ChangeTracking,
    HubQuery,
    HubUrlError,
    ODataFilter,
    parse_hub_url,
    translate_where,
)

__all__ = [
    "CeqlError",
    "ChangeTracking",
    "HubQuery",
    "HubUrlError",
    "ODataFilter",
    "parse_hub_url",
    "translate_where",
]
