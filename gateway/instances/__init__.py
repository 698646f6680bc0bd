"""Instances: the instance JSON of the Cloud Elements API, validated into the records the gateway runs on."""

from __future__ import annotations

from gateway.instances.model import (
    DatesConfiguration,
    Instance,
    Notification,
    ResourceConfig,
    SourceConnection,
)
from gateway.instances.secrets import SECRET_KEYS, SecretBox, SecretKeyMismatch, mask_body
from gateway.instances.validate import ELEMENT_KEYS, ValidatedInstance, apply_patch, validate_instance

__all__ = [
    "ELEMENT_KEYS",
    "SECRET_KEYS",
    "DatesConfiguration",
    "Instance",
    "Notification",
    "ResourceConfig",
    "SecretBox",
    "SecretKeyMismatch",
    "SourceConnection",
    "ValidatedInstance",
    "apply_patch",
    "mask_body",
    "validate_instance",
]
