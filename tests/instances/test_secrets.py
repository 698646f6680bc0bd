from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.errors import ConfigError, InstanceValidationError
from gateway.instances import SECRET_KEYS, SECRET_URL_KEYS, SecretBox, SecretKeyMismatch, validate_instance
from gateway.instances.secrets import CALLBACK_HEADERS, ENCRYPTED
from tests.instances.seed_examples import seed_bodies

KEY = "k" * 32
OLD_KEY = "o" * 32
SECRETS = {
    "user.password": "hunter2-password",
    "oauth.api.secret": "hunter2-oauth",
    "event.notification.signature.key": "hunter2-signature",
    "event.notification.signature.previous.key": "hunter2-previous-signature",
    "event.notification.basic.password": "hunter2-basic",
    "event.notification.callback.url": "https://hooks.example.com/in?token=hunter2-callback",
}
HEADERS = {"Authorization": "Bearer hunter2-header", "X-Api-Key": "hunter2-api-key"}


@pytest.fixture
def body() -> dict[str, Any]:
    return {
        "name": "crm",
        "configuration": {
            "user.username": "me",
            "dynamics.tenant": "x.crm.dynamics.com",
            **SECRETS,
            CALLBACK_HEADERS: dict(HEADERS),
        },
    }


def test_every_encrypted_key_is_covered() -> None:
    assert set(SECRETS) == {*SECRET_KEYS, *SECRET_URL_KEYS}


def test_round_trip(body: dict[str, Any]) -> None:
    box = SecretBox(KEY)
    assert box.decrypt_body(box.encrypt_body(body)) == body


def test_ciphertext_holds_no_plaintext(body: dict[str, Any]) -> None:
    encrypted = SecretBox(KEY).encrypt_body(body)
    text = json.dumps(encrypted)
    assert "hunter2" not in text
    for key in SECRETS:
        assert set(encrypted["configuration"][key]) == {ENCRYPTED}
    assert {name: set(value) for name, value in encrypted["configuration"][CALLBACK_HEADERS].items()} == {
        "Authorization": {ENCRYPTED},
        "X-Api-Key": {ENCRYPTED},
    }
    assert encrypted["configuration"]["user.username"] == "me"
    assert body["configuration"]["user.password"] == "hunter2-password"  # the input is left alone


def test_headers_given_as_a_string_of_json_are_encrypted_whole(body: dict[str, Any]) -> None:
    body["configuration"][CALLBACK_HEADERS] = json.dumps(HEADERS)
    box = SecretBox(KEY)
    encrypted = box.encrypt_body(body)
    assert set(encrypted["configuration"][CALLBACK_HEADERS]) == {ENCRYPTED}
    assert "hunter2" not in json.dumps(encrypted)
    assert box.decrypt_body(encrypted) == body


def test_encrypting_twice_does_not_wrap_tokens(body: dict[str, Any]) -> None:
    box = SecretBox(SecretStr(KEY))
    once = box.encrypt_body(body)
    assert box.encrypt_body(once) == once
    assert box.decrypt_body(once) == box.decrypt_body(box.encrypt_body(once)) == body


def test_plaintext_secrets_pass_decryption_unchanged(body: dict[str, Any]) -> None:
    """Bodies stored before a field was encrypted (callback URLs and headers, until now) still load."""
    assert SecretBox(KEY).decrypt_body(body) == body


def test_bodies_without_configuration_are_copied() -> None:
    assert SecretBox(KEY).encrypt_body({"name": "x"}) == {"name": "x"}


def test_a_different_key_does_not_decrypt(body: dict[str, Any]) -> None:
    encrypted = SecretBox(KEY).encrypt_body(body)
    with pytest.raises(SecretKeyMismatch, match="neither GATEWAY_SECRET_KEY nor") as caught:
        SecretBox("q" * 32).decrypt_body(encrypted)
    assert isinstance(caught.value, ConfigError)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("token", ["", "not-a-token", "é"])
def test_a_damaged_token_is_a_mismatch(token: str) -> None:
    with pytest.raises(SecretKeyMismatch):
        SecretBox(KEY).decrypt_body({"configuration": {"user.password": {ENCRYPTED: token}}})


@pytest.mark.parametrize("previous", [[], [KEY + "x"]])
def test_short_keys_are_refused(previous: list[str]) -> None:
    with pytest.raises(ConfigError, match="at least 32 characters"):
        SecretBox("k" * 31, previous=previous)
    with pytest.raises(ConfigError, match="at least 32 characters"):
        SecretBox(KEY, previous=[*previous, "o" * 31])


def test_a_previous_key_decrypts_and_the_current_key_encrypts(body: dict[str, Any]) -> None:
    stored = SecretBox(OLD_KEY).encrypt_body(body)
    rotated = SecretBox(KEY, previous=[SecretStr("p" * 32), OLD_KEY])
    assert rotated.decrypt_body(stored) == body
    assert not rotated.is_current(stored)
    rewritten = rotated.encrypt_body(rotated.decrypt_body(stored))
    assert rotated.is_current(rewritten)
    assert SecretBox(KEY).decrypt_body(rewritten) == body  # the old key is no longer needed
    with pytest.raises(SecretKeyMismatch):
        SecretBox(OLD_KEY).decrypt_body(rewritten)


def test_is_current_finds_plaintext_and_old_tokens_anywhere(body: dict[str, Any]) -> None:
    box = SecretBox(KEY, previous=[OLD_KEY])
    assert box.is_current({"name": "no secrets", "configuration": {"user.username": "me"}})
    assert not box.is_current(body)  # plaintext: stored by an older version
    current = box.encrypt_body(body)
    assert box.is_current(current)
    old_header = SecretBox(OLD_KEY).encrypt_body({"configuration": {CALLBACK_HEADERS: {"X-A": "v"}}})
    mixed = {**current, "configuration": {**current["configuration"], **old_header["configuration"]}}
    assert not box.is_current(mixed)
    plain_header = {**current["configuration"], CALLBACK_HEADERS: {"X-A": "plain"}}
    assert not box.is_current({**current, "configuration": plain_header})


def test_a_header_named_like_the_encrypted_form_is_refused() -> None:
    body = seed_bodies()["2016"]
    body["configuration"][CALLBACK_HEADERS] = {ENCRYPTED: "value"}
    with pytest.raises(InstanceValidationError) as caught:
        validate_instance(body)
    assert [p.path for p in caught.value.problems] == [
        "$.configuration['event.notification.callback.headers']['$encrypted']"
    ]


# A mark outside the token alphabet (ASCII): any plaintext left shows, however short the rest is.
_secret_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40).map(lambda t: "\u00b6" + t)
_header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True).filter(lambda n: n != ENCRYPTED)
_headers = st.dictionaries(_header_names, _secret_text, max_size=4)


@st.composite
def _bodies(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from([*SECRET_KEYS, *SECRET_URL_KEYS]), unique=True))
    configuration: dict[str, Any] = {key: draw(_secret_text) for key in keys}
    configuration["user.username"] = draw(st.text(st.characters(max_codepoint=127), max_size=10))
    headers = draw(st.none() | _headers | _headers.map(json.dumps))
    if headers is not None:
        configuration[CALLBACK_HEADERS] = headers
    return {"name": "crm", "configuration": configuration}


@hypothesis_settings(max_examples=150, deadline=None)
@given(body=_bodies())
def test_any_body_round_trips_and_no_secret_is_stored_in_plaintext(body: dict[str, Any]) -> None:
    box = SecretBox(KEY, previous=[OLD_KEY])
    encrypted = box.encrypt_body(body)
    assert "\u00b6" not in orjson.dumps(encrypted).decode()
    assert box.is_current(encrypted)
    assert box.decrypt_body(encrypted) == body
    assert SecretBox(OLD_KEY, previous=[KEY]).decrypt_body(encrypted) == body


@hypothesis_settings(max_examples=100, deadline=None)
@given(body=_bodies())
def test_any_body_under_a_former_key_is_found_stale_and_rewritten_current(body: dict[str, Any]) -> None:
    holds_secrets = SecretBox(KEY).encrypt_body(body) != body
    box = SecretBox(KEY, previous=[OLD_KEY])
    stored = SecretBox(OLD_KEY).encrypt_body(body)
    assert box.is_current(stored) is not holds_secrets
    assert box.is_current(body) is not holds_secrets  # plaintext, as an older version stored it
    rewritten = box.encrypt_body(box.decrypt_body(stored))
    assert box.is_current(rewritten)
    assert SecretBox(KEY).decrypt_body(rewritten) == body


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com:\u00b6token/in",  # a port that is not a number
        "https://hooks.example\uff0fcom@\u00b6token.example/in",  # NFKC changes the netloc
        "https://[::1\u00b6token/in",
    ],
)
def test_a_url_problem_never_quotes_the_url(url: str) -> None:
    body = seed_bodies()["2016"]
    body["configuration"]["event.notification.callback.url"] = url
    with pytest.raises(InstanceValidationError) as caught:
        validate_instance(body)
    (problem,) = [p for p in caught.value.problems if "callback.url" in p.path]
    assert problem.message.startswith("is not a valid URL: ")
    assert "\u00b6" not in str(caught.value)


def test_subscription_secrets_are_encrypted_like_the_instance_s(body: dict[str, Any]) -> None:
    body["subscriptions"] = [
        {"id": "s", "name": "kept", "configuration": {**SECRETS, CALLBACK_HEADERS: HEADERS}}
    ]
    box = SecretBox(KEY)

    encrypted = box.encrypt_body(body)

    assert "hunter2" not in json.dumps(encrypted)
    assert encrypted["subscriptions"][0]["name"] == "kept"
    assert box.decrypt_body(encrypted) == body
    assert box.is_current(encrypted)
    assert not SecretBox(OLD_KEY, previous=[KEY]).is_current(encrypted)
