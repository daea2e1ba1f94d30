"""Building the memory subsystem from the settings, at startup (router/memory/factory.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from router.exceptions import MemorySetupError
from router.memory.backend import Turn
from router.memory.factory import open_admin, open_backend, open_service
from router.memory.local import LocalBackend
from router.memory.metrics import MemoryMetrics
from router.memory.supermemory_api import SupermemoryApiBackend
from router.settings import Settings
from tests.memory.conftest import Double

pytestmark = pytest.mark.usefixtures("settings_env")


@pytest.mark.parametrize("backend", ["supermemory-router", "off"])
async def test_no_service_when_the_router_does_no_memory(backend: str) -> None:
    settings = Settings(_env_file=None, memory_backend=backend)  # type: ignore[call-arg]
    assert open_backend(settings) is None
    assert open_service(settings, MemoryMetrics(CollectorRegistry(), backend)) is None


@pytest.mark.parametrize(
    ("backend", "key", "reachable"),
    [
        ("off", "sm_key_0123", False),
        ("supermemory-router", None, False),
        ("supermemory-router", "sm_key_0123", True),  # Supermemory's API, with the router's key
        ("local", None, True),
    ],
)
def test_who_can_list_and_forget(backend: str, key: str | None, reachable: bool) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, memory_backend=backend, supermemory_api_key=key
    )
    admin = open_admin(settings)
    assert (admin is not None) == reachable
    if admin is not None:
        assert admin.backend_name == backend


def test_a_store_that_cannot_be_opened_stops_the_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, memory_backend="local", memory_local_path=blocker / "memories.sqlite3"
    )
    with pytest.raises(MemorySetupError) as caught:
        open_service(settings, MemoryMetrics(CollectorRegistry(), "local"))
    assert "MEMORY_ROUTER_MEMORY_LOCAL_PATH" in str(caught.value)


async def test_the_local_service_creates_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "volume" / "nested" / "memories.sqlite3"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, memory_backend="local", memory_local_path=path
    )
    registry = CollectorRegistry()
    service = open_service(settings, MemoryMetrics(registry, "local"))
    assert service is not None
    try:
        assert isinstance(service.backend, LocalBackend)
        assert path.exists()
        assert service.budget == 0.3
    finally:
        await service.aclose(1)


async def test_the_api_service_talks_to_the_configured_url(double: Double) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        memory_backend="supermemory-api",
        supermemory_api_key=double.api_key,
        memory_api_url=double.url,
    )
    registry = CollectorRegistry()
    service = open_service(settings, MemoryMetrics(registry, "supermemory-api"))
    assert service is not None
    service.start()
    try:
        assert isinstance(service.backend, SupermemoryApiBackend)
        service.queue.submit("alice", Turn("my editor is helix", "ok"))
        await service.queue.join()
        body = json.dumps({"messages": [{"role": "user", "content": "which editor?"}]}).encode()
        new, outcome, _ = await service.prepare("alice", "/v1/chat/completions", body)
    finally:
        await service.aclose(1)
    assert outcome == "injected"
    assert b"helix" in new
    labels = {"backend": "supermemory-api", "outcome": "injected"}
    assert registry.get_sample_value("memory_router_memory_retrievals_total", labels) == 1
