"""Webhook signatures: Cloud Elements' `Elements-Webhook-Signature` and Standard Webhooks' `webhook-*`.

Every request carries both, so a receiver written for Cloud Elements and one written against a
Standard Webhooks library can each verify it without change.

Receivers verifying with a Standard Webhooks library and a plain key (one without the `whsec_`
prefix) must hand the library the key's UTF-8 bytes: either `Webhook(key.encode())`, or the string
`"whsec_" + base64(key.encode())`. Passing the plain string itself would make the library
base64-decode it, which yields a different secret.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Sequence

from gateway.errors import InvalidSigningKey
from gateway.instances.model import Notification

_WHSEC_PREFIX = "whsec_"
DEFAULT_ROTATION_GRACE_SECONDS = 86400.0


def elements_signature(key: str, body: bytes) -> str:
    """`sha256=` + base64(HMAC-SHA256(key, body)), keyed with the key string's UTF-8 bytes."""
    digest = hmac.digest(key.encode("utf-8"), body, "sha256")
    return "sha256=" + base64.b64encode(digest).decode("ascii")


def standard_signature(key: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64(HMAC-SHA256(secret, "{msg_id}.{timestamp}.{body}"))."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(_standard_secret(key), signed, "sha256")
    return "v1," + base64.b64encode(digest).decode("ascii")


@functools.lru_cache(maxsize=1024)  # one decoding per key, not per request
def _standard_secret(key: str) -> bytes:
    """A `whsec_` key is base64 after the prefix, as the Standard Webhooks libraries read it;
    any other key is used as its UTF-8 bytes, the same secret the Elements signature uses."""
    if not key.startswith(_WHSEC_PREFIX):
        return key.encode("utf-8")
    try:
        # Decoded exactly as the reference libraries decode it (padding added, stray characters
        # dropped), so that both ends derive the same secret from the same string.
        secret = base64.b64decode(key[len(_WHSEC_PREFIX) :] + "==")
    except binascii.Error as exc:
        raise InvalidSigningKey(f"signing key starting with {_WHSEC_PREFIX} is not base64: {exc}") from exc
    if not secret:
        raise InvalidSigningKey(f"signing key {_WHSEC_PREFIX} has an empty secret")
    return secret


def sign_headers(*, keys: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The identity and signature headers of one webhook request.

    `keys` is current key first, then the keys still honoured during a rotation. `webhook-signature`
    lists one signature per key, so a receiver holding either the old or the new key verifies.
    `Elements-Webhook-Signature` is signed with the current key only: Cloud Elements receivers
    compare the header with one value they compute, so a list would fail them all.
    Without keys the request is unsigned and only the identity headers are set.
    """
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "Elements-Webhook-Id": msg_id}
    if keys:
        headers["webhook-signature"] = " ".join(standard_signature(k, msg_id, timestamp, body) for k in keys)
        headers["Elements-Webhook-Signature"] = elements_signature(keys[0], body)
    return headers


def signing_keys(
    notification: Notification,
    *,
    now: float,
    grace_seconds: float = DEFAULT_ROTATION_GRACE_SECONDS,
) -> tuple[str, ...]:
    """The keys to sign with: the current one, and the previous one within `grace_seconds` of the
    rotation (`notification.signature_rotated_at` and `now` in epoch seconds). An unknown rotation
    time ends the grace: we cannot tell how long receivers have had the new key, and signing with
    a retired key forever would keep it valid forever."""
    current = notification.signature_key
    if not current:
        return ()
    previous = notification.previous_signature_key
    rotated_at = notification.signature_rotated_at
    if previous and previous != current and rotated_at is not None and now - rotated_at < grace_seconds:
        return (current, previous)
    return (current,)
