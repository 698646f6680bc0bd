"""Instances: the instance JSON of the Cloud Elements API, validated into the records the gateway runs on."""

from __future__ import annotations

from gateway.errors import SecretKeyMismatch
from gateway.instances._connection import PREVIOUS_SIGNATURE_KEY, SIGNATURE_KEY, SIGNATURE_ROTATED_AT
from gateway.instances._read import child
from gateway.instances.masking import MASK, mask_body, mask_url, unmasked_patch
from gateway.instances.model import (
    DatesConfiguration,
    Instance,
    Notification,
    ResourceConfig,
    SourceConnection,
    Subscription,
)
from gateway.instances.secrets import SECRET_KEYS, SECRET_URL_KEYS, SecretBox
from gateway.instances.validate import ELEMENT_KEYS, ValidatedInstance, apply_patch, validate_instance

__all__ = [
    "ELEMENT_KEYS",
    "MASK",
    "PREVIOUS_SIGNATURE_KEY",
    "SECRET_KEYS",
    "SECRET_URL_KEYS",
    "SIGNATURE_KEY",
    "SIGNATURE_ROTATED_AT",
    "DatesConfiguration",
    "Instance",
    "Notification",
    "ResourceConfig",
    "SecretBox",
    "SecretKeyMismatch",
    "SourceConnection",
    "Subscription",
    "ValidatedInstance",
    "apply_patch",
    "child",
    "mask_body",
    "mask_url",
    "unmasked_patch",
    "validate_instance",
]
