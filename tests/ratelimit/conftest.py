"""Fixtures for the rate limiter tests: a fake clock and real redis-server instances.

Each Redis instance runs on a free loopback port with persistence off, in a tmp dir.
A missing ``redis-server`` is installed with apt-get when running as root; otherwise
the tests fail with a message saying what to install (they never skip).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from router.ratelimit import RedisRateLimiter
from tests.support.redis_server import RedisServer


class FakeClock:
    """A settable clock for deterministic GCRA arithmetic."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(scope="session")
def redis_server(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """One Redis for the session; tests use distinct prefixes so they don't interfere."""
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of one test (no glob characters, so SCAN MATCH can use it)."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def limiters(redis_server: RedisServer, prefix: str) -> AsyncIterator[list[RedisRateLimiter]]:
    """Two limiters on one Redis, each with its own client, like two router replicas.

    Neither may fall back: any Redis error reported during the test fails it. The
    timeout is generous because these tests are about arithmetic and atomicity, and a
    loaded two-core CI machine can take longer than 0.25 s to open a burst of
    connections; timeouts have their own tests."""
    errors: list[str] = []
    made = [
        RedisRateLimiter(redis_server.url, prefix=prefix, on_error=errors.append, timeout=5.0)
        for _ in range(2)
    ]
    yield made
    for limiter in made:
        await limiter.aclose()
    assert errors == [], f"the limiter fell back: {errors}"
