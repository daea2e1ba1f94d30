"""The memory settings (router/settings.py): today's behaviour by default, one variable
switches the backend, bad values are named."""

from __future__ import annotations

import pytest

from router.settings import SettingsError, load_settings

pytestmark = pytest.mark.usefixtures("settings_env")


def test_defaults_keep_todays_behaviour() -> None:
    s = load_settings()
    assert s.memory_backend == "supermemory-router"
    assert s.memory_api_url == "https://api.supermemory.ai"
    assert s.memory_budget_seconds == 0.3
    assert (s.memory_search_limit, s.memory_queue_size, s.memory_store_attempts) == (5, 1000, 4)


def test_one_environment_variable_switches_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_ROUTER_MEMORY_BACKEND", "local")
    monkeypatch.setenv("MEMORY_ROUTER_MEMORY_LOCAL_PATH", "/data/memories.sqlite3")
    monkeypatch.setenv("MEMORY_ROUTER_MEMORY_BUDGET_SECONDS", "0.15")
    s = load_settings()
    assert (s.memory_backend, str(s.memory_local_path), s.memory_budget_seconds) == (
        "local",
        "/data/memories.sqlite3",
        0.15,
    )


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"memory_backend": "redis"}, "memory_backend"),
        ({"memory_backend": "supermemory-api"}, "SUPERMEMORY_API_KEY"),
        ({"memory_api_url": "ftp://x"}, "memory_api_url"),
        ({"memory_api_url": "http://x/?a=1"}, "memory_api_url"),
        ({"memory_budget_seconds": 0}, "memory_budget_seconds"),
        ({"memory_queue_size": 0}, "memory_queue_size"),
    ],
)
def test_bad_memory_settings_are_named(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    assert named in str(caught.value)


def test_the_api_url_loses_its_trailing_slash() -> None:
    s = load_settings(memory_api_url="http://localhost:6767/")
    assert s.memory_api_url == "http://localhost:6767"
