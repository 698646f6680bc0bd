"""Delivery: webhook bodies, signatures, and the callback address guard, exported here; the
deliverer itself is `gateway.delivery.runner.start_deliverer` (imported from there, so that the
building blocks stay importable without the Kafka and API machinery)."""

from __future__ import annotations

from gateway.delivery.bodies import BodyFormat, render_body
from gateway.delivery.signing import (
    DEFAULT_ROTATION_GRACE_SECONDS,
    elements_signature,
    sign_headers,
    signing_keys,
    standard_signature,
)
from gateway.delivery.ssrf import (
    GuardedConnector,
    GuardedResolver,
    IPAddress,
    check_address,
    check_callback_url,
    refusal_from,
)

__all__ = [
    "DEFAULT_ROTATION_GRACE_SECONDS",
    "BodyFormat",
    "GuardedConnector",
    "GuardedResolver",
    "IPAddress",
    "check_address",
    "check_callback_url",
    "elements_signature",
    "refusal_from",
    "render_body",
    "sign_headers",
    "signing_keys",
    "standard_signature",
]
