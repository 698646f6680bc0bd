from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.instances import MASK, SECRET_KEYS, SecretBox, apply_patch, mask_body, mask_url, unmasked_patch
from gateway.instances.secrets import CALLBACK_HEADERS

CALLBACK = "event.notification.callback.url"


@pytest.fixture
def body() -> dict[str, Any]:
    return {
        "name": "crm",
        "configuration": {
            "user.username": "me",
            "user.password": "hunter2-password",
            "event.notification.signature.key": "hunter2-signature",
            CALLBACK: "https://hooks.example.com:8443/in/hunter2-path?token=hunter2-query",
            "oauth.token.url": "https://login.example.com/tenant/oauth2/token",
            CALLBACK_HEADERS: {"Authorization": "Bearer hunter2-header"},
            "event.poller.configuration": {"accounts": {"url": "/hubs/crm/accounts"}},
        },
    }


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com:8443/in?token=t", "https://hooks.example.com:8443/********"),
        ("https://user:pw@HOOKS.example.com/a/b#frag", "https://hooks.example.com/********"),
        ("http://127.0.0.1:9000/hooks/in?token=s3cret", "http://127.0.0.1:9000/********"),
        ("http://[::1]:9000/x", "http://[::1]:9000/********"),
        ("https://hooks.example.com", "https://hooks.example.com/********"),
        ("<INSERT_CALLBACK_URL>", MASK),
        ("ftp://files.example.com/token", MASK),
        ("https://", MASK),
        ("https://[::1/x", MASK),
    ],
)
def test_a_url_shows_its_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert mask_url(url) == shown


_label = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
_hosts = st.lists(_label, min_size=1, max_size=3).map(".".join)
_secret_part = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True).map(lambda t: "SECRET" + t)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https"]),
    user=st.none() | _secret_part,
    host=_hosts,
    port=st.none() | st.integers(1, 65535),
    path=st.lists(_secret_part, max_size=3),
    query=st.none() | _secret_part,
    fragment=st.none() | _secret_part,
)
def test_no_part_of_a_url_but_its_origin_is_shown(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    path: list[str],
    query: str | None,
    fragment: str | None,
) -> None:
    origin = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    url = f"{scheme}://{'' if user is None else user + ':' + user + '@'}{host}"
    url += ("" if port is None else f":{port}") + "".join("/" + p for p in path)
    url += ("" if query is None else f"?token={query}") + ("" if fragment is None else f"#{fragment}")
    shown = mask_url(url)
    assert shown == f"{origin}/{MASK}"
    assert "SECRET" not in shown
    assert mask_url(shown) == shown


def test_header_values_are_masked_and_names_shown_in_the_form_given() -> None:
    headers = {"Authorization": "Bearer hunter2", "X-Team": "a"}
    assert mask_body({CALLBACK_HEADERS: headers}) == {
        CALLBACK_HEADERS: {"Authorization": MASK, "X-Team": MASK}
    }
    masked = mask_body({CALLBACK_HEADERS: json.dumps(headers)})[CALLBACK_HEADERS]
    assert json.loads(masked) == {"Authorization": MASK, "X-Team": MASK}
    assert mask_body({CALLBACK_HEADERS: "{not json hunter2"}) == {CALLBACK_HEADERS: MASK}


def test_mask_replaces_secrets_anywhere(body: dict[str, Any]) -> None:
    encrypted = SecretBox("k" * 32).encrypt_body(body)
    body["misplaced"] = [{"user.password": "hunter2-misplaced", CALLBACK: "https://x.example/hunter2"}]

    for masked in (mask_body(body), mask_body(encrypted)):
        assert "hunter2" not in json.dumps(masked)
        assert "$encrypted" not in json.dumps(masked)
        assert {masked["configuration"][key] for key in SECRET_KEYS if key in body["configuration"]} == {MASK}
        assert masked["configuration"]["user.username"] == "me"
    assert mask_body(body)["misplaced"] == [{"user.password": MASK, CALLBACK: f"https://x.example/{MASK}"}]
    assert mask_body(body)["configuration"][CALLBACK] == f"https://hooks.example.com:8443/{MASK}"
    assert mask_body(body)["configuration"]["oauth.token.url"] == body["configuration"]["oauth.token.url"]
    assert mask_body(body)["configuration"]["event.poller.configuration"] == {
        "accounts": {"url": "/hubs/crm/accounts"}
    }
    assert body["configuration"]["user.password"] == "hunter2-password"  # the input is left alone


def test_a_body_sent_back_as_read_changes_nothing(body: dict[str, Any]) -> None:
    echoed = mask_body(body)
    assert apply_patch(body, unmasked_patch(echoed, body)) == body


def test_a_patch_keeps_masked_secrets_and_takes_new_ones(body: dict[str, Any]) -> None:
    patch = mask_body(body)
    patch["configuration"]["user.password"] = "new-password"
    patch["configuration"][CALLBACK_HEADERS] = {"Authorization": MASK, "X-New": "new-header"}
    merged = apply_patch(body, unmasked_patch(patch, body))
    assert merged["configuration"]["user.password"] == "new-password"
    assert merged["configuration"]["event.notification.signature.key"] == "hunter2-signature"
    assert merged["configuration"][CALLBACK] == body["configuration"][CALLBACK]
    assert merged["configuration"][CALLBACK_HEADERS] == {
        "Authorization": "Bearer hunter2-header",
        "X-New": "new-header",
    }


def test_a_new_callback_url_replaces_the_stored_one(body: dict[str, Any]) -> None:
    patch = {"configuration": {CALLBACK: "https://hooks.example.com:8443/other?token=new"}}
    merged = apply_patch(body, unmasked_patch(patch, body))
    assert merged["configuration"][CALLBACK] == "https://hooks.example.com:8443/other?token=new"


def test_masked_headers_in_a_string_of_json_get_their_stored_values(body: dict[str, Any]) -> None:
    body["configuration"][CALLBACK_HEADERS] = json.dumps({"Authorization": "Bearer hunter2", "X-A": "a"})
    patch = {"configuration": {CALLBACK_HEADERS: json.dumps({"Authorization": MASK, "X-A": "changed"})}}
    merged = apply_patch(body, unmasked_patch(patch, body))
    assert json.loads(merged["configuration"][CALLBACK_HEADERS]) == {
        "Authorization": "Bearer hunter2",
        "X-A": "changed",
    }


def test_a_mask_for_a_secret_not_stored_is_not_stored() -> None:
    stored: dict[str, Any] = {"configuration": {"user.username": "me"}}
    patch = {"configuration": {"user.password": MASK}}
    assert apply_patch(stored, unmasked_patch(patch, stored)) == stored


_values = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True)


@st.composite
def _stored(draw: st.DrawFn) -> dict[str, Any]:
    configuration: dict[str, Any] = {
        key: draw(_values) for key in draw(st.lists(st.sampled_from(SECRET_KEYS), unique=True))
    }
    if draw(st.booleans()):
        configuration[CALLBACK] = draw(
            st.sampled_from(["https://h.example/p?t=", "http://127.0.0.1:8/", "not a url "])
        ) + draw(_values)
    headers = st.dictionaries(_names, _values, max_size=3)
    if draw(st.booleans()):
        configuration[CALLBACK_HEADERS] = draw(headers | headers.map(json.dumps))
    configuration["user.username"] = draw(_values)
    return {"name": draw(_values), "configuration": configuration}


@hypothesis_settings(max_examples=200, deadline=None)
@given(stored=_stored())
def test_any_body_read_and_sent_back_round_trips(stored: dict[str, Any]) -> None:
    assert apply_patch(stored, unmasked_patch(mask_body(stored), stored)) == stored
