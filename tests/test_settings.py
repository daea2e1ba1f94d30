"""Settings: flags win over the environment, which wins over .env and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.exceptions import SettingsError
from router.settings import load_settings

pytestmark = pytest.mark.usefixtures("settings_env")


def test_defaults() -> None:
    s = load_settings()
    assert (s.host, s.port, s.litellm_url, s.config, s.log_level) == (
        "127.0.0.1",
        8765,
        "http://localhost:4000",
        None,
        "INFO",
    )
    assert s.supermemory_key is None


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_URL", "http://litellm:4000/")
    monkeypatch.setenv("MEMORY_ROUTER_PORT", "9000")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("SUPERMEMORY_API_KEY", "sm_abc_0123")
    monkeypatch.setenv("MEMORY_ROUTER_CONFIG", "/etc/rules.yaml")
    s = load_settings()
    assert (s.litellm_url, s.port, s.log_level, s.supermemory_key, str(s.config)) == (
        "http://litellm:4000",
        9000,
        "DEBUG",
        "sm_abc_0123",
        "/etc/rules.yaml",
    )


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_URL", "http://from-env:4000")
    monkeypatch.setenv("MEMORY_ROUTER_PORT", "9000")
    s = load_settings(litellm_url="http://from-flag:4000", port=9100, host=None)
    assert (s.litellm_url, s.port, s.host) == ("http://from-flag:4000", 9100, "127.0.0.1")


def test_dotenv_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "SUPERMEMORY_API_KEY=sm_from_file\nLITELLM_URL=http://dotenv:4000\nANTHROPIC_API_KEY=x\n"
    )
    assert load_settings().supermemory_key == "sm_from_file"
    monkeypatch.setenv("LITELLM_URL", "http://env:4000")
    assert load_settings().litellm_url == "http://env:4000"


def test_keys_of_eight_characters_are_accepted() -> None:
    settings = load_settings(supermemory_api_key="sm_12345", control_token="tok_1234")
    assert settings.supermemory_key == "sm_12345"
    assert {"sm_12345", "tok_1234"} <= set(settings.secrets)


def test_litellm_master_key_is_read_only_to_be_kept_out_of_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LITELLM_MASTER_KEY", "  sk-master-0123456789  ")
    assert load_settings().secrets == ["sk-master-0123456789"]
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-1234")  # too short to scrub: not a secret
    assert load_settings().secrets == []
    monkeypatch.setenv("LITELLM_MASTER_KEY", " ")
    assert load_settings().litellm_master_key is None


def test_a_blank_config_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_ROUTER_CONFIG", " ")
    assert load_settings().config is None


def test_blank_key_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERMEMORY_API_KEY", "  ")
    assert load_settings().supermemory_key is None


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"litellm_url": "localhost:4000"}, "litellm_url"),
        ({"litellm_url": "http://x:4000/?a=1"}, "query"),
        ({"port": 0}, "port"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"supermemory_api_key": "sm_key\r\nx-evil: 1"}, "supermemory_api_key"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        # Too short to be a real key, and to scrub from the logs without mangling them.
        ({"supermemory_api_key": "sm_key"}, "supermemory_api_key: is 6 characters long"),
        ({"supermemory_api_key": "k"}, "supermemory_api_key: is 1 character long"),
        ({"control_token": "sm_key", "control_access": "token"}, "control_token: is 6 char"),
    ],
)
def test_invalid_settings(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    assert fragment in str(caught.value)
    assert "sm_key" not in str(caught.value), "a bad key must not be echoed"
