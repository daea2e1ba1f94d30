"""Redis down, hanging or erroring: fail open (or closed), report, recover by itself."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from router.ratelimit import LOGGER_NAME, Limit, RedisRateLimiter, Verdict
from tests.ratelimit.conftest import FakeClock
from tests.support.polling import await_until
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

LIMIT = Limit(requests_per_minute=60, burst=2)
OPEN = Verdict(True, 60, 60, 0.0, 0.0, None)
CLOSED = Verdict(False, 60, 0, 1.0, 1.0, "unavailable")


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warnings() -> Iterator[list[logging.LogRecord]]:
    """Records of the limiter's logger (attached directly: the app may stop propagation)."""
    handler = ListHandler()
    logger = logging.getLogger(LOGGER_NAME)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


async def wait_until_limiting(rl: RedisRateLimiter, user: str) -> Verdict:
    """A verdict from Redis rather than the fallback, once Redis answers again (bounded)."""

    async def from_redis() -> Verdict | None:
        verdict = await rl.check(user, LIMIT)
        return None if verdict in (OPEN, CLOSED) else verdict

    return await await_until(from_redis, interval=0.05, what="the limiter back on Redis")


async def test_killed_redis_fails_open_reports_and_recovers_after_restart(
    own_redis: RedisServer, warnings: list[logging.LogRecord]
) -> None:
    errors: list[str] = []
    rl = RedisRateLimiter(own_redis.url, on_error=errors.append, retry_interval=0.2)
    try:
        assert (await rl.check("u", LIMIT)).remaining == 1
        own_redis.kill()

        async def calls() -> list[Verdict]:
            verdicts = [await rl.check("u", LIMIT) for _ in range(10)]
            verdicts += await asyncio.gather(*(rl.check(f"u{n}", LIMIT) for n in range(50)))
            await rl.add_tokens("u", Limit(tokens_per_minute=60), 1000)  # swallowed too
            return verdicts

        verdicts = await asyncio.wait_for(calls(), 10)
        assert verdicts == [OPEN] * 60
        assert len(errors) == 61
        assert errors[0] == "connection"
        assert set(errors) <= {"connection", "circuit_open"}  # refused at once, never waited on
        assert "circuit_open" in errors  # within retry_interval Redis is not even tried
        assert len(warnings) == 1  # rate-limited: once per 10 s
        assert warnings[0].levelno == logging.WARNING
        assert "connection" in warnings[0].getMessage()
        assert "allowing requests" in warnings[0].getMessage()

        own_redis.start()
        verdict = await wait_until_limiting(rl, "u")
        assert verdict.allowed and verdict.remaining == 1  # restarted empty: fresh budget
        assert (await rl.check("u", LIMIT)).allowed
        assert (await rl.check("u", LIMIT)).reason == "requests"
        assert "answers again" in warnings[-1].getMessage()
    finally:
        await rl.aclose()


async def test_fail_closed_refuses_while_redis_is_down(own_redis: RedisServer) -> None:
    errors: list[str] = []
    rl = RedisRateLimiter(
        own_redis.url, fail_open=False, on_error=errors.append, retry_interval=0.0
    )
    try:
        assert (await rl.check("u", LIMIT)).allowed
        own_redis.kill()
        for _ in range(5):
            assert await rl.check("u", LIMIT) == CLOSED
        assert errors == ["connection"] * 5  # retry_interval 0: every call tries Redis
        own_redis.start()
        verdict = await wait_until_limiting(rl, "u")
        assert verdict.allowed and verdict.remaining == 1
    finally:
        await rl.aclose()


async def test_retry_interval_and_log_interval_on_a_fake_clock(
    warnings: list[logging.LogRecord],
) -> None:
    clock = FakeClock()
    errors: list[str] = []
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: refused at once
    rl = RedisRateLimiter(url, on_error=errors.append, clock=clock, retry_interval=1.0)
    try:
        for _ in range(4):
            assert await rl.check("u", LIMIT) == OPEN
        assert errors == ["connection"] + ["circuit_open"] * 3
        clock.advance(1.0)
        await rl.check("u", LIMIT)
        assert errors[-1] == "connection"
        assert len(warnings) == 1
        clock.advance(10.0)
        await rl.add_tokens("u", Limit(tokens_per_minute=60), 10)
        assert errors[-1] == "connection"
        assert len(warnings) == 2
        assert "5 failed call(s)" in warnings[1].getMessage()
    finally:
        await rl.aclose()


async def test_a_hanging_redis_times_out_quickly() -> None:
    with socket.socket() as blackhole:  # accepts TCP connections, never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        port = blackhole.getsockname()[1]
        errors: list[str] = []
        rl = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", on_error=errors.append, timeout=0.2)
        try:
            # redis-py has no socket timeout by default: without the limiter's, this would hang
            assert await asyncio.wait_for(rl.check("u", LIMIT), 5) == OPEN
            assert errors == ["timeout"]
        finally:
            await rl.aclose()


async def test_a_redis_error_reply_fails_open(redis_server: RedisServer, prefix: str) -> None:
    client = Redis.from_url(redis_server.url)
    rl = RedisRateLimiter(redis_server.url, prefix=prefix, retry_interval=0.0)  # no on_error
    try:
        await client.set(prefix + "u", "not a hash")  # WRONGTYPE for HMGET
        assert await rl.check("u", LIMIT) == OPEN
        errors: list[str] = []
        rl2 = RedisRateLimiter(redis_server.url, prefix=prefix, on_error=errors.append)
        try:
            await rl2.check("u", LIMIT)
        finally:
            await rl2.aclose()
        assert errors == ["response"]
        await client.delete(prefix + "u")
        assert (await rl.check("u", LIMIT)).remaining == 1
    finally:
        await rl.aclose()
        await client.aclose()
