"""Delivery: webhook bodies, signatures, and the callback address guard."""

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
