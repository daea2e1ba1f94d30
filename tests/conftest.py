from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from router.app import RouterApp, create_app
from router.memory_router import MemoryRouter
from router.server import server_config
from router.settings import Settings
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.clients import Clients
from tests.support.environment import PROXY_NAMES, clean_env, steers
from tests.support.processes import ProcessError, Processes
from tests.support.provision import ProvisionError, system_tool
from tests.support.redis_server import RedisServer
from tests.support.router_process import RouterProcess, start_router_process
from tests.support.servers import serve_in_thread

SM_KEY = "sm_test_key_0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / "test-logs"


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream()
    with serve_in_thread(fake) as url:
        yield fake, url


@pytest.fixture
def upstream(upstream_server: tuple[FakeUpstream, str]) -> FakeUpstream:
    fake, _ = upstream_server
    fake.reset()
    return fake


@pytest.fixture
def upstream_url(upstream_server: tuple[FakeUpstream, str]) -> str:
    return upstream_server[1]


RouterFactory = Callable[..., tuple[RouterApp, str]]


@pytest.fixture
def start_router(upstream_url: str) -> Iterator[RouterFactory]:
    """Start a router app on a real uvicorn server; returns (app, base_url)."""
    with ExitStack() as stack:

        def start(
            *,
            router: MemoryRouter | None = None,
            registry: CollectorRegistry | None = None,
            **overrides: Any,
        ) -> tuple[RouterApp, str]:
            values: dict[str, Any] = {
                "litellm_url": upstream_url,
                "supermemory_api_key": SM_KEY,
                **overrides,
            }
            settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
            app = create_app(settings, router=router, registry=registry)
            config = server_config(app, settings, log_level="warning")
            url = stack.enter_context(serve_in_thread(app, config))
            return app, url

        yield start


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read from the test alone: no variable that could steer the router or its
    clients (proxies included), and an empty working directory (no ``.env``)."""
    for name in list(os.environ):
        if steers(name) or name.lower() in PROXY_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def clients() -> Iterator[Clients]:
    """The SDK clients a test makes, closed at its end."""
    pool = Clients()
    yield pool
    pool.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.fixture
def router_app(start_router: RouterFactory) -> tuple[RouterApp, str]:
    return start_router()


Launch = Callable[..., RouterProcess]


@pytest.fixture
def launch(upstream_url: str, tmp_path: Path) -> Iterator[Launch]:
    """Start the router as a user would, the ``memory-router`` CLI in its own process:
    ``launch(config, **env)`` in front of the fake LiteLLM, with the test's key."""
    processes = Processes(tmp_path)

    def start(config: Path, **env: str) -> RouterProcess:
        full_env = clean_env(**{"SUPERMEMORY_API_KEY": SM_KEY, **env})
        try:
            return start_router_process(processes, upstream_url, full_env, config=config)
        except ProcessError as exc:
            pytest.fail(str(exc), pytrace=False)

    yield start
    processes.stop_all(timeout=5)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """redis-server, installed by scripts/provision.sh as root; otherwise the tests fail
    saying what to install (they never skip)."""
    try:
        return system_tool("redis-server", LOG_DIR)
    except ProvisionError as exc:
        pytest.fail(f"redis-server is needed by the rate-limit tests: {exc}", pytrace=False)


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis for one test, which may kill and restart it."""
    server = RedisServer(redis_binary, tmp_path)
    server.start()
    yield server
    server.stop()
