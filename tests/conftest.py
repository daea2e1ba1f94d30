from __future__ import annotations

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
from tests.fake_upstream import FakeUpstream
from tests.servers import serve_in_thread

pytest_plugins = ["tests.redis_server", "tests.router_process"]

SM_KEY = "sm_test_key_0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent


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
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.fixture
def router_app(start_router: RouterFactory) -> tuple[RouterApp, str]:
    return start_router()
