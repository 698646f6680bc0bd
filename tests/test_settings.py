from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.runtime import resolve_admin_token
from gateway.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
_ROW = re.compile(r"^\| `(GATEWAY_[A-Z_]+)` \| (.*?) \| (.*?) \|$")


def _readme_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in README.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
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
        return "`~/" + str(default.relative_to(Path.home())) + "`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


def test_readme_settings_table_lists_every_setting_with_its_default_and_meaning() -> None:
    rows = _readme_rows()
    expected = {f"GATEWAY_{name.upper()}": name for name in Settings.model_fields}
    assert set(rows) == set(expected)
    for env_name, field_name in expected.items():
        default, meaning = rows[env_name]
        assert default == _default_text(field_name), env_name
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
    ("variable", "value", "field"),
    [
        ("GATEWAY_SECRET_KEY", "too-short", "secret_key"),
        ("GATEWAY_CALLBACK_ALLOWED_NETWORKS", "10.0.0.0/33", "callback_allowed_networks"),
        ("GATEWAY_RETRY_SCHEDULE", "0,soon", "retry_schedule"),
        ("GATEWAY_API_PORT", "70000", "api_port"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert caught.value.errors()[0]["loc"][0] == field


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
