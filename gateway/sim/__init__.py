"""A Dataverse (Dynamics 365) Web API simulator for tests, demos and benchmarks.

Start one in-process with `async with Simulator(users=..., clients=...) as sim:` and point a
client at `sim.api_url`; or serve one until cancelled with `run_simulator(host, port, ...)`.
"""

from __future__ import annotations

from gateway.sim._app import API_ROOT, create_app
from gateway.sim._auth import Authority
from gateway.sim._clock import Clock, ManualClock, format_timestamp, utc_now
from gateway.sim._errors import (
    FilterError,
    OAuthError,
    ServiceError,
    SimulatorError,
    Throttled,
    Unauthenticated,
)
from gateway.sim._faults import Faults
from gateway.sim._generator import ChangeGenerator, GeneratorSettings
from gateway.sim._limits import Limits, ServiceProtection
from gateway.sim._odata_filter import Predicate, parse_filter
from gateway.sim._records import ENTITY_SETS, TABLES, Kind, Row, TableSpec
from gateway.sim._request_log import RequestRecord
from gateway.sim._simulator import DEMO_CLIENTS, DEMO_USERS, Simulator, run_simulator
from gateway.sim._store import DataverseState, Table

__all__ = [
    "API_ROOT",
    "DEMO_CLIENTS",
    "DEMO_USERS",
    "ENTITY_SETS",
    "TABLES",
    "Authority",
    "ChangeGenerator",
    "Clock",
    "DataverseState",
    "Faults",
    "FilterError",
    "GeneratorSettings",
    "Kind",
    "Limits",
    "ManualClock",
    "OAuthError",
    "Predicate",
    "RequestRecord",
    "Row",
    "ServiceError",
    "ServiceProtection",
    "Simulator",
    "SimulatorError",
    "Table",
    "TableSpec",
    "Throttled",
    "Unauthenticated",
    "create_app",
    "format_timestamp",
    "parse_filter",
    "run_simulator",
    "utc_now",
]
