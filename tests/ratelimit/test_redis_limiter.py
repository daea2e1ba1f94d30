"""The Redis limiter against a real redis-server: same GCRA, shared and atomic, bounded.

Server time moves on between calls, so expectations come from the verdicts themselves
(bounds, then a sleep of exactly the advertised retry_after) or from bounded polling.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from router.ratelimit import Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter, Verdict
from tests.support.polling import await_until
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
