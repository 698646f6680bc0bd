from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
import traceback
import typing
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.errors import Problem, SettingsError
from gateway.runtime import resolve_admin_token
from gateway.settings import Settings, allowed_values, load_settings, variable

README = Path(__file__).resolve().parent.parent / "README.md"
_ROW = re.compile(r"^\| `(GATEWAY_[A-Z_]+)` \| (.*?) \| (.*?) \| (.*?) \|$")


def _readme_rows() -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in README.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3), match.group(4))
    return rows


def _default_text(name: str) -> str:
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if isinstance(default, list):
        return (
            "`" + ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) + "`"
            if default
            else "empty"
        )
    if isinstance(default, Path):
        shown = f"~/{default.relative_to(Path.home())}" if default.is_relative_to(Path.home()) else default
        return f"`{shown}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


def test_readme_settings_table_lists_every_setting_with_its_default_allowed_values_and_meaning() -> None:
    rows = _readme_rows()
    expected = {variable(name): name for name in Settings.model_fields}
    assert set(rows) == set(expected)
    for env_name, field_name in expected.items():
        default, allowed, meaning = rows[env_name]
        assert default == _default_text(field_name), env_name
        assert allowed == allowed_values(field_name), env_name
        assert meaning == Settings.model_fields[field_name].description, env_name


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_CALLBACK_ALLOWED_NETWORKS", "127.0.0.0/8, ::1/128")
    monkeypatch.setenv("GATEWAY_RETRY_SCHEDULE", "0,5,300")
    settings = Settings()
    assert settings.callback_allowed_networks == [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
    assert settings.retry_schedule == [0.0, 5.0, 300.0]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GATEWAY_SECRET_KEY", "too-short", "must be at least 32 characters"),
        (
            "GATEWAY_CALLBACK_ALLOWED_NETWORKS",
            "127.0.0.0/8,10.0.0.0/33",
            "'10.0.0.0/33' is not a network in CIDR form, such as 10.0.0.0/8 or fd00::/8",
        ),
        ("GATEWAY_RETRY_SCHEDULE", "0,soon", "item 2 is not a number"),
        ("GATEWAY_RETRY_SCHEDULE", "0,-5", "delays must be finite and not negative"),
        ("GATEWAY_API_PORT", "notaport", "must be a whole number from 0 to 65535"),
        ("GATEWAY_API_PORT", "70000", "must be a whole number from 0 to 65535"),
        ("GATEWAY_EVENT_MODE", "json", "must be structured or binary"),
        ("GATEWAY_METRICS_PER_INSTANCE", "maybe", "must be true or false"),
        ("GATEWAY_HTTP_TIMEOUT_SECONDS", "0", "must be a number above 0"),
        ("GATEWAY_KUBERNETES_API_URL", "kubernetes.default.svc", "must be an http:// or https:// URL"),
    ],
)
def test_a_bad_value_is_reported_by_its_variable_in_plain_words(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == (Problem(name, message),)


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_PORT", "notaport")
    monkeypatch.setenv("GATEWAY_LOG_LEVEL", "loud")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert [p.path for p in caught.value.problems] == ["GATEWAY_API_PORT", "GATEWAY_LOG_LEVEL"]


_SCALED_DOWN = {
    "GATEWAY_LEAVE_GROUP_ON_SHUTDOWN": "if-scaled-down",
    "GATEWAY_KUBERNETES_STATEFULSET": "gw-poller",
}
_NOT_A_POD = (
    "must be the pod name, <GATEWAY_KUBERNETES_STATEFULSET>-<ordinal>, when "
    "GATEWAY_LEAVE_GROUP_ON_SHUTDOWN is if-scaled-down"
)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        (
            {"GATEWAY_LEAVE_GROUP_ON_SHUTDOWN": "always"},
            Problem(
                "GATEWAY_LEAVE_GROUP_ON_SHUTDOWN",
                "always needs GATEWAY_GROUP_INSTANCE_ID: only a static member stays in its groups when "
                "it stops, any other leaves them by itself",
            ),
        ),
        (
            {"GATEWAY_LEAVE_GROUP_ON_SHUTDOWN": "if-scaled-down", "GATEWAY_GROUP_INSTANCE_ID": "gw-poller-1"},
            Problem(
                "GATEWAY_KUBERNETES_STATEFULSET",
                "must name the replica's StatefulSet when GATEWAY_LEAVE_GROUP_ON_SHUTDOWN is if-scaled-down",
            ),
        ),
        (
            {**_SCALED_DOWN, "GATEWAY_GROUP_INSTANCE_ID": "gw-api-1"},
            Problem("GATEWAY_GROUP_INSTANCE_ID", _NOT_A_POD),
        ),
        (
            {**_SCALED_DOWN, "GATEWAY_GROUP_INSTANCE_ID": "gw-poller"},
            Problem("GATEWAY_GROUP_INSTANCE_ID", _NOT_A_POD),
        ),
        (
            {**_SCALED_DOWN, "GATEWAY_GROUP_INSTANCE_ID": "gw-poller-one"},
            Problem("GATEWAY_GROUP_INSTANCE_ID", _NOT_A_POD),
        ),
    ],
    ids=["no-instance-id", "no-statefulset", "other-statefulset", "no-ordinal", "ordinal-not-a-number"],
)
def test_settings_that_do_not_fit_together_name_the_variable_to_change(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], problem: Problem
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == (problem,)


def test_a_statefulset_pod_may_leave_if_scaled_down(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**_SCALED_DOWN, "GATEWAY_GROUP_INSTANCE_ID": "gw-poller-12"}.items():
        monkeypatch.setenv(name, value)
    assert load_settings().leave_group_on_shutdown == "if-scaled-down"


def test_log_levels_are_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"


# Every setting but free text, which any value fits (the secret key's length is checked below).
_CHECKED = [
    name
    for name, field in Settings.model_fields.items()
    if field.annotation not in (str, str | None, SecretStr | None, Path)
]


@pytest.mark.parametrize("field", _CHECKED)
def test_every_checked_setting_names_its_variable_and_never_pydantic(
    monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    monkeypatch.setenv(variable(field), "\u00a7 not a value")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    (problem,) = caught.value.problems
    assert problem.path == variable(field)
    shown = str(caught.value)
    for jargon in ("Input should", "pydantic", "lax-or-strict", "[type="):
        assert jargon not in shown


_SECRET_FIELDS = [
    name
    for name, field in Settings.model_fields.items()
    if SecretStr in (field.annotation, *typing.get_args(field.annotation))
]


def _everything_shown(error: BaseException) -> str:
    """All an operator could see of an error: its text, its repr and its whole traceback chain."""
    return "".join([str(error), repr(error), *traceback.format_exception(error)])


# The secrets whose values are checked, so that a bad one is reported.
_CHECKED_SECRETS = ["secret_key", "secret_key_previous"]


@pytest.mark.parametrize("field", _CHECKED_SECRETS)
@hypothesis_settings(max_examples=60, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=30))
def test_no_settings_error_shows_an_invalid_secret(field: str, text: str) -> None:
    # The mark makes any echo of the value findable, however short or common the rest of it is.
    # Commas separate keys: an item too short is reported by its number, never by its text.
    value = "\u00b6" + text if field == "secret_key" else "p" * 32 + ",\u00b6" + text.replace(",", "")
    environ = {variable(field): value, "GATEWAY_API_PORT": "notaport"}
    with mock.patch.dict(os.environ, environ), pytest.raises(SettingsError) as caught:
        load_settings()
    assert variable(field) in str(caught.value)
    assert "\u00b6" not in _everything_shown(caught.value)


def test_secret_settings_are_the_known_ones() -> None:
    """A new secret setting must join the test above, or say why not (the admin token is any text):
    the list is checked, not guessed."""
    assert _SECRET_FIELDS == ["admin_token", "secret_key", "secret_key_previous"]
    assert set(_SECRET_FIELDS) - set(_CHECKED_SECRETS) == {"admin_token"}


def test_previous_secret_keys_are_comma_separated_and_each_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SECRET_KEY_PREVIOUS", "a" * 32 + ", " + "b" * 40)
    keys = load_settings().secret_key_previous
    assert [key.get_secret_value() for key in keys] == ["a" * 32, "b" * 40]
    assert "a" * 32 not in repr(keys)
    monkeypatch.setenv("GATEWAY_SECRET_KEY_PREVIOUS", "a" * 32 + ",too-short")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == (
        Problem("GATEWAY_SECRET_KEY_PREVIOUS", "item 2 must be at least 32 characters"),
    )


def test_the_command_prints_the_variable_not_the_value() -> None:
    env = {**os.environ, "GATEWAY_API_PORT": "notaport", "GATEWAY_SECRET_KEY": "s3cret-but-too-short"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "event-gateway: invalid settings:",
        "  GATEWAY_API_PORT: must be a whole number from 0 to 65535",
        "  GATEWAY_SECRET_KEY: must be at least 32 characters",
    ]


def test_secrets_are_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "admin-token-value")
    monkeypatch.setenv("GATEWAY_SECRET_KEY", "k" * 40)
    shown = repr(Settings())
    assert "admin-token-value" not in shown
    assert "k" * 40 not in shown


def test_without_an_admin_token_one_is_generated_into_a_private_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "secrets" / "admin-token"
    settings = Settings(admin_token_file=token_file)
    with caplog.at_level("WARNING"):
        token = resolve_admin_token(settings)
    assert len(token) >= 32
    assert token_file.read_text().strip() == token
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert str(token_file) in caplog.text
    assert token not in caplog.text
