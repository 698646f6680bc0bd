from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.errors import ConfigError
from gateway.instances import SECRET_KEYS, SecretBox, SecretKeyMismatch, mask_body

KEY = "k" * 32
SECRETS = {
    "user.password": "hunter2-password",
    "oauth.api.secret": "hunter2-oauth",
    "event.notification.signature.key": "hunter2-signature",
    "event.notification.signature.previous.key": "hunter2-previous-signature",
    "event.notification.basic.password": "hunter2-basic",
}


@pytest.fixture
def body() -> dict[str, Any]:
    return {
        "name": "crm",
        "configuration": {"user.username": "me", "dynamics.tenant": "x.crm.dynamics.com", **SECRETS},
    }


def test_every_secret_key_is_covered() -> None:
    assert set(SECRETS) == set(SECRET_KEYS)


def test_round_trip(body: dict[str, Any]) -> None:
    box = SecretBox(KEY)
    assert box.decrypt_body(box.encrypt_body(body)) == body


def test_ciphertext_holds_no_plaintext(body: dict[str, Any]) -> None:
    encrypted = SecretBox(KEY).encrypt_body(body)
    text = json.dumps(encrypted)
    assert "hunter2" not in text
    for key in SECRET_KEYS:
        assert set(encrypted["configuration"][key]) == {"$encrypted"}
    assert encrypted["configuration"]["user.username"] == "me"
    assert body["configuration"]["user.password"] == "hunter2-password"  # the input is left alone


def test_encrypting_twice_does_not_wrap_tokens(body: dict[str, Any]) -> None:
    box = SecretBox(SecretStr(KEY))
    once = box.encrypt_body(body)
    assert box.encrypt_body(once) == once
    assert box.decrypt_body(once) == box.decrypt_body(box.encrypt_body(once)) == body


def test_plaintext_secrets_pass_decryption_unchanged(body: dict[str, Any]) -> None:
    assert SecretBox(KEY).decrypt_body(body) == body


def test_bodies_without_configuration_are_copied() -> None:
    assert SecretBox(KEY).encrypt_body({"name": "x"}) == {"name": "x"}


def test_a_different_key_does_not_decrypt(body: dict[str, Any]) -> None:
    encrypted = SecretBox(KEY).encrypt_body(body)
    with pytest.raises(SecretKeyMismatch, match="does not match") as caught:
        SecretBox("q" * 32).decrypt_body(encrypted)
    assert isinstance(caught.value, ConfigError)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("token", ["", "not-a-token", "é"])
def test_a_damaged_token_is_a_mismatch(token: str) -> None:
    with pytest.raises(SecretKeyMismatch):
        SecretBox(KEY).decrypt_body({"configuration": {"user.password": {"$encrypted": token}}})


def test_short_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 characters"):
        SecretBox("k" * 31)


def test_mask_replaces_secrets_anywhere(body: dict[str, Any]) -> None:
    encrypted = SecretBox(KEY).encrypt_body(body)
    body["misplaced"] = [{"user.password": "hunter2-misplaced"}]

    for masked in (mask_body(body), mask_body(encrypted)):
        assert "hunter2" not in json.dumps(masked)
        assert "$encrypted" not in json.dumps(masked)
        assert {masked["configuration"][key] for key in SECRET_KEYS} == {"********"}
        assert masked["configuration"]["user.username"] == "me"
    assert mask_body(body)["misplaced"] == [{"user.password": "********"}]
    assert body["configuration"]["user.password"] == "hunter2-password"
