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
from gateway.sources.dynamics.client import DynamicsSource
from gateway.sources.dynamics.transport import RetryPolicy

__all__ = [
    "CeqlError",
    "ChangeTracking",
    "DynamicsSource",
    "HubQuery",
    "HubUrlError",
    "ODataFilter",
    "RetryPolicy",
    "parse_hub_url",
    "translate_where",
]
