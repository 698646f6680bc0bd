"""The admin API application."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from gateway.api.auth import bearer_auth
from gateway.api.cluster import PollerGroup, add_cluster_routes
from gateway.api.columns import COLUMN_CHECK, ColumnCheck
from gateway.api.console import create_console_app
from gateway.api.deliveries import add_delivery_routes
from gateway.api.endpoints import add_endpoint_routes
from gateway.api.health import add_health_routes
from gateway.api.instances import CALLBACK_NETWORKS, INSTANCE_LOG, add_routes
from gateway.api.openapi import add_openapi_route, openapi_document
from gateway.api.rates import RATES, MinuteRates
from gateway.api.responses import problems_middleware
from gateway.api.status import add_status_routes
from gateway.api.stream import EventTail, add_stream_routes
from gateway.api.subscriptions import add_subscription_routes
from gateway.api.test_event import TestEventSender, add_test_event_routes
from gateway.delivery.history import DeliveryHistory
from gateway.delivery.runner import DeliveryViews
from gateway.health import Health
from gateway.instances.log import InstanceLog
from gateway.polling.status import PollStatus
from gateway.settings import IPNetwork


def create_api_app(
    *,
    instance_log: InstanceLog,
    admin_token: str,
    health: Health,
    poller_group: PollerGroup,
    delivery: DeliveryViews,
    delivery_history: DeliveryHistory,
    event_tail: EventTail,
    test_events: TestEventSender,
    rates: MinuteRates,
    column_check: ColumnCheck,
    callback_allowed_networks: Sequence[IPNetwork] = (),
    poll_status: PollStatus | None = None,
) -> web.Application:
    """The admin API, and the console under /console/. `poll_status` is this process's pollers' book of
    last polls; None where the process polls nothing."""
    app = web.Application(
        middlewares=[bearer_auth(admin_token), problems_middleware], client_max_size=1024 * 1024
    )
    app[INSTANCE_LOG] = instance_log
    app[CALLBACK_NETWORKS] = tuple(callback_allowed_networks)
    app[COLUMN_CHECK] = column_check
    add_routes(app)
    add_subscription_routes(app)
    add_cluster_routes(app, poller_group)
    add_delivery_routes(app, delivery.dead_letters, delivery_history)
    add_endpoint_routes(app, delivery.endpoints)
    add_status_routes(app, poll_status)
    add_stream_routes(app, event_tail)
    add_test_event_routes(app, test_events)
    app[RATES] = rates
    add_health_routes(app, health)
    add_openapi_route(app, openapi_document())
    app.add_subapp("/console", create_console_app(admin_token=admin_token))
    return app
