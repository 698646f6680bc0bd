"""The Microsoft Dynamics 365 (Dataverse) source."""

from __future__ import annotations

from gateway.sources.dynamics.client import DynamicsSource
from gateway.sources.dynamics.transport import RetryPolicy

__all__ = ["DynamicsSource", "RetryPolicy"]
