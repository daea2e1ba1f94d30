"""Fixtures for the memory tests: the Supermemory v5 double on a real uvicorn server,
and real backends (a SQLite file in a tmp dir, the SDK-based backend against the double)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from router.memory.backend import Turn
from router.memory.local import LocalBackend
from router.memory.supermemory_api import SupermemoryApiBackend
from tests.doubles.supermemory_api import DoubleState, create_app
from tests.support.servers import serve_in_thread

DOUBLE_KEY = "sm_double_key_5f3a9c1e7b2d"


def seed(path: Path, user_id: str, *facts: str) -> list[str]:
    """Store turns in the local store at ``path`` with a connection of the test's own, as
    another process would; the ids of the memories made."""

    async def store() -> list[str]:
        backend = await LocalBackend.open(path)
        try:
            return [await backend.store(user_id, Turn(fact, "noted")) for fact in facts]
        finally:
            await backend.aclose()

    return asyncio.run(store())


def user(content: Any) -> dict[str, Any]:
    """A chat message from the user (either API's shape)."""
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def backend_metric(registry: CollectorRegistry, name: str, backend: str, **labels: str) -> float:
    """A memory metric's sample for ``backend`` (0 when it was never counted)."""
    return registry.get_sample_value(name, {"backend": backend, **labels}) or 0.0


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@dataclass
class Double:
    url: str
    api_key: str
    state: DoubleState

    def reset(self) -> None:
        with self.state.lock:
            self.state.namespaces.clear()
            self.state.requests.clear()
            self.state.fail_next.clear()
            self.state.hold.clear()
            self.state.held = 0
        self.state.release.set()  # frees anything a previous test left waiting
        self.state.release.clear()

    def requests_for(self, operation: str) -> list[dict[str, object]]:
        with self.state.lock:
            return [r for r in self.state.requests if r["operation"] == operation]


@pytest.fixture(scope="session")
def double_server() -> Iterator[Double]:
    app = create_app(api_key=DOUBLE_KEY)
    with serve_in_thread(app) as url:
        double = Double(url=url, api_key=DOUBLE_KEY, state=app.state.double)
        try:
            yield double
        finally:
            double.state.release.set()


@pytest.fixture
def double(double_server: Double) -> Iterator[Double]:
    double_server.reset()
    try:
        yield double_server
    finally:
        double_server.state.release.set()


@pytest.fixture
async def local_backend(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    backend = await LocalBackend.open(tmp_path / "memories.sqlite3")
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture
async def api_backend(double: Double) -> AsyncIterator[SupermemoryApiBackend]:
    backend = SupermemoryApiBackend.create(
        api_key=double.api_key, base_url=double.url, timeout=10.0, trust_env=False
    )
    try:
        yield backend
    finally:
        await backend.aclose()
