"""The Redis limiter (router/ratelimit/redis_limiter.py) against a real redis-server: same
GCRA, shared and atomic, bounded; and Redis down, hanging or erroring: fail open (or
closed), report, recover by itself.

Server time moves on between calls, so expectations come from the verdicts themselves
(bounds, then a sleep of exactly the advertised retry_after) or from bounded polling.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from router.ratelimit import (
    LOGGER_NAME,
    Budget,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    Verdict,
)
from tests.ratelimit.conftest import FakeClock
from tests.support.polling import await_until
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


@pytest.fixture(params=["memory", "redis"])
async def backend(
    request: pytest.FixtureRequest, limiters: list[RedisRateLimiter]
) -> AsyncIterator[RateLimiter]:
    """Behaviour both backends share, on real time."""
    if request.param == "memory":
        memory = MemoryRateLimiter()
        yield memory
        await memory.aclose()
    else:
        yield limiters[0]


async def keys(client: Redis, prefix: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=prefix + "*", count=1000)]


async def test_burst_then_refused_then_allowed_after_retry_after(backend: RateLimiter) -> None:
    limit = Limit(requests_per_minute=600, burst=3)  # T = 0.1 s
    start = time.monotonic()
    verdicts = [await backend.check("u", limit) for _ in range(4)]
    elapsed = time.monotonic() - start
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert [v.limit for v in verdicts] == [600] * 4
    for n, verdict in enumerate(verdicts[:3]):
        assert 0.1 * (n + 1) - elapsed <= verdict.reset_seconds <= 0.1 * (n + 1) + 1e-9
        assert verdict.retry_after == 0 and verdict.reason is None
    refused = verdicts[3]
    assert refused.reason == "requests"
    assert 0.1 - elapsed <= refused.retry_after <= 0.1
    assert refused.reset_seconds == pytest.approx(refused.retry_after + 0.2, abs=1e-5)
    await asyncio.sleep(refused.retry_after + 0.005)
    again = await backend.check("u", limit)
    assert again.allowed and again.remaining == 0
    assert (await backend.check("u", limit)).reason == "requests"


async def test_token_debt_refuses_the_next_request_until_drained(backend: RateLimiter) -> None:
    limit = Limit(requests_per_minute=600, burst=5, tokens_per_minute=60_000, token_burst=100)
    assert (await backend.check("u", limit)).allowed
    start = time.monotonic()
    await backend.add_tokens("u", limit, 400)  # 1 ms per token: 0.4 s, 0.1 s tolerated
    refused = await backend.check("u", limit)
    elapsed = time.monotonic() - start
    assert not refused.allowed and refused.reason == "tokens"
    assert 0.3 - elapsed <= refused.retry_after <= 0.3
    assert refused.remaining == 4  # a refusal takes no request
    await asyncio.sleep(refused.retry_after + 0.005)
    assert (await backend.check("u", limit)).allowed


async def test_peek_reports_what_is_left_and_takes_nothing(
    backend: RateLimiter, client: Redis, prefix: str
) -> None:
    limit = Limit(requests_per_minute=6, burst=3, tokens_per_minute=60, token_burst=100)
    assert await backend.peek("u", limit) == Budget(3, 100, 0.0, 0.0)
    assert await keys(client, prefix) == []  # peeking stores nothing
    assert (await backend.check("u", limit)).remaining == 2
    for _ in range(5):  # 10 s per request, 1 s per token: nothing refills meanwhile
        left = await backend.peek("u", limit)
        assert (left.requests, left.tokens) == (2, 100)
        assert 9.0 < left.requests_full_in <= 10.0 and left.tokens_full_in == 0.0
    await backend.add_tokens("u", limit, 130)  # into debt
    left = await backend.peek("u", limit)
    assert left.tokens == -30 and 129.0 < left.tokens_full_in <= 130.0
    refused = await backend.check("u", limit)
    assert refused.reason == "tokens" and refused.remaining == 2  # peek and check agree


async def test_peek_after_the_burst_is_spent_says_none_is_left(backend: RateLimiter) -> None:
    limit = Limit(requests_per_minute=6, burst=2)
    assert [(await backend.check("u", limit)).allowed for _ in range(2)] == [True, True]
    left = await backend.peek("u", limit)
    assert (left.requests, left.tokens, left.tokens_full_in) == (0, None, 0.0)
    assert 19.0 < left.requests_full_in <= 20.0
    assert not (await backend.check("u", limit)).allowed


async def test_peek_while_redis_is_down_says_it_cannot_tell(own_redis: RedisServer) -> None:
    errors: list[str] = []
    rl = RedisRateLimiter(own_redis.url, on_error=errors.append, retry_interval=0.0)
    try:
        assert await rl.peek("u", LIMIT) is not None
        own_redis.kill()
        assert await rl.peek("u", LIMIT) is None
        assert errors == ["connection"]
    finally:
        await rl.aclose()


async def test_unlimited_touches_nothing(backend: RateLimiter, client: Redis, prefix: str) -> None:
    for _ in range(200):
        assert await backend.check("u", Limit()) == Verdict(True, 0, 0, 0.0, 0.0, None)
    await backend.add_tokens("u", Limit(requests_per_minute=5), 1000)
    assert await keys(client, prefix) == []


async def test_users_are_independent(backend: RateLimiter) -> None:
    limit = Limit(requests_per_minute=6, burst=1)
    assert (await backend.check("a", limit)).allowed
    assert not (await backend.check("a", limit)).allowed
    assert (await backend.check("b", limit)).allowed


async def test_two_replicas_enforce_one_combined_limit_atomically(
    limiters: list[RedisRateLimiter],
) -> None:
    limit = Limit(requests_per_minute=6, burst=20)  # T = 10 s: nothing refills meanwhile
    a, b = limiters
    verdicts = await asyncio.gather(*(rl.check("u", limit) for _ in range(250) for rl in (a, b)))
    allowed = [v for v in verdicts if v.allowed]
    assert len(allowed) == 20
    assert sorted(v.remaining for v in allowed) == list(range(20))  # each slot taken once
    assert all(v.reason == "requests" for v in verdicts if not v.allowed)


async def test_token_debits_from_one_replica_refuse_on_the_other(
    limiters: list[RedisRateLimiter],
) -> None:
    limit = Limit(requests_per_minute=600, tokens_per_minute=600, token_burst=0)  # 0.1 s/token
    a, b = limiters
    await asyncio.gather(*(rl.add_tokens("u", limit, 10) for _ in range(25) for rl in (a, b)))
    refused = await b.check("u", limit)
    # 50 concurrent debits of 10 tokens: 500 tokens = 50 s, none lost.
    assert refused.reason == "tokens"
    assert 49.0 < refused.retry_after <= 50.0
    assert (await a.check("u", limit)).reason == "tokens"


async def test_keys_expire_once_their_tats_pass(
    limiters: list[RedisRateLimiter], client: Redis, prefix: str
) -> None:
    rl = limiters[0]
    limit = Limit(requests_per_minute=600, burst=5)
    for _ in range(5):
        await rl.check("u", limit)
    ttl = await client.pttl(prefix + "u")
    assert 0 < ttl <= 500
    await rl.add_tokens("t", Limit(tokens_per_minute=60_000), 300)  # 0.3 s ahead
    assert 0 < await client.pttl(prefix + "t") <= 300
    users = [uuid.uuid4().hex for _ in range(300)]
    await asyncio.gather(*(rl.check(u, Limit(requests_per_minute=30)) for u in users))  # 2 s
    assert len(await keys(client, prefix)) >= 300

    async def all_gone() -> bool:
        return await keys(client, prefix) == []

    await await_until(all_gone, seconds=5.0)


async def test_debt_extends_the_expiry(
    limiters: list[RedisRateLimiter], client: Redis, prefix: str
) -> None:
    rl = limiters[0]
    limit = Limit(requests_per_minute=600, tokens_per_minute=60)
    await rl.check("u", limit)
    assert await client.pttl(prefix + "u") <= 100
    await rl.add_tokens("u", limit, 2)  # 2 s of tokens
    assert 1900 < await client.pttl(prefix + "u") <= 2000


async def test_script_flush_is_survived(limiters: list[RedisRateLimiter], client: Redis) -> None:
    rl = limiters[0]
    limit = Limit(requests_per_minute=6, burst=2, tokens_per_minute=60)
    assert (await rl.check("u", limit)).allowed
    await client.script_flush()
    assert (await rl.check("u", limit)).remaining == 0  # EVALSHA failed, script reloaded
    await client.script_flush()
    await rl.add_tokens("u", limit, 100)
    assert (await rl.check("u", limit)).reason == "tokens"


# -- Redis down, hanging or erroring: fail open (or closed), report, recover by itself -----

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
