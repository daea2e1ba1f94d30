"""Redis-backed GCRA limiter: one Lua script per operation, timed by the server clock."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from router.exceptions import MissingDependency
from router.ratelimit.types import Budget, Limit, Params, Verdict, allowed_without_state, budget_of

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

LOGGER_NAME = "memory_router.ratelimit"
DEFAULT_PREFIX = "memory-router:rl:"
UNAVAILABLE_RETRY_AFTER = 1.0  # Retry-After when Redis is down and fail_open=False

ErrorCallback = Callable[[str], None]


# Times in microseconds from the server clock, so replicas with skewed clocks agree.
# One hash per user id: r = request TAT, t = token TAT; it expires when both have passed.
_LUA_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = redis.call('HMGET', KEYS[1], 'r', 't')
local r_tat = math.max(tonumber(stored[1]) or now, now)
local t_tat = math.max(tonumber(stored[2]) or now, now)
local function save(field, value)
  redis.call('HSET', KEYS[1], field, string.format('%.17g', value))
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((math.max(r_tat, t_tat) - now) / 1000)))
end
"""

# ARGV: request interval, request tau, token interval, token tau (us; interval 0 = none).
# Returns {allowed, remaining, reset_us, retry_us, reason (0 none, 1 requests, 2 tokens)}.
_CHECK_LUA = (
    _LUA_PRELUDE
    + """
local r_int, r_tau = tonumber(ARGV[1]), tonumber(ARGV[2])
local t_int, t_tau = tonumber(ARGV[3]), tonumber(ARGV[4])
local eps = 0.001
local t_wait, r_wait = 0, 0
if t_int > 0 then t_wait = t_tat - t_tau - now end
if r_int > 0 then r_wait = r_tat + r_int - r_tau - now end
local function remaining()
  if r_int == 0 then return 0 end
  return math.max(0, math.floor((now + r_tau - r_tat) / r_int + 1e-9))
end
if t_wait > eps or r_wait > eps then
  local reason = 1
  if t_wait > eps then reason = 2 end
  return {0, remaining(), math.ceil(r_tat - now), math.ceil(math.max(t_wait, r_wait)), reason}
end
if r_int == 0 then return {1, 0, 0, 0, 0} end
r_tat = r_tat + r_int
save('r', r_tat)
return {1, remaining(), math.ceil(r_tat - now), 0, 0}
"""
)

# ARGV: token interval (us), tokens.
_ADD_TOKENS_LUA = (
    _LUA_PRELUDE
    + """
t_tat = t_tat + tonumber(ARGV[1]) * tonumber(ARGV[2])
save('t', t_tat)
return 1
"""
)

# Reads, never writes: how far each TAT lies ahead of the server's clock (us, >= 0).
_PEEK_LUA = (
    _LUA_PRELUDE
    + """
return {math.ceil(r_tat - now), math.ceil(t_tat - now)}
"""
)

_REASONS = {1: "requests", 2: "tokens"}


class RedisRateLimiter:
    """GCRA state in Redis, shared by every replica that uses the same URL and prefix.

    Each operation is one Lua script (EVALSHA, loaded again on NOSCRIPT), atomic on the
    server and timed by the server clock. At most ``max_connections`` operations run at
    once; the others wait their turn (an operation takes well under a millisecond on a
    healthy Redis). When Redis fails, ``on_error(kind)`` is called (kind: ``connection``,
    ``timeout``, ``response``, ``redis``, ``other``, or ``circuit_open`` for calls not
    even tried in the ``retry_interval`` after a failure), a WARNING is logged at most
    once per ``log_interval``, and ``check`` answers allowed (``fail_open``) or refused
    with reason ``unavailable``. The first call after ``retry_interval`` tries Redis
    again, so the limiter recovers without a restart.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        fail_open: bool = True,
        on_error: ErrorCallback | None = None,
        timeout: float = 0.25,
        max_connections: int = 16,
        retry_interval: float = 1.0,
        log_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        try:
            from redis.asyncio import ConnectionPool, Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            raise MissingDependency(
                "rate limits shared through Redis (REDIS_URL) need the 'redis' package, "
                "which is not installed: pip install 'memory-router[redis]'"
            ) from None
        pool = ConnectionPool.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # no retries: fail fast, the caller falls back
        )
        self._client: Redis = Redis.from_pool(pool)
        self._slots = asyncio.Semaphore(max_connections)  # so the pool is never exhausted
        self._check_script: AsyncScript = self._client.register_script(_CHECK_LUA)
        self._add_script: AsyncScript = self._client.register_script(_ADD_TOKENS_LUA)
        self._peek_script: AsyncScript = self._client.register_script(_PEEK_LUA)
        self._prefix = prefix
        self._fail_open = fail_open
        self._on_error = on_error
        self._retry_interval = retry_interval
        self._log_interval = log_interval
        self._clock = clock
        self._log = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self._down_until = -math.inf
        self._failures = 0  # since Redis last answered
        self._unlogged = 0  # failures since the last warning
        self._next_log = -math.inf

    async def check(self, user_id: str, limit: Limit) -> Verdict:
        if limit.unlimited:
            return allowed_without_state(limit)
        p = Params.of(limit)
        args = [p.r_int * 1e6, p.r_tau * 1e6, p.t_int * 1e6, p.t_tau * 1e6]
        ok, raw = await self._run(self._check_script, user_id, args)
        rpm = limit.requests_per_minute or 0
        if not ok:
            if self._fail_open:
                return allowed_without_state(limit)
            retry = UNAVAILABLE_RETRY_AFTER
            return Verdict(False, rpm, 0, retry, retry, "unavailable")
        allowed, remaining, reset_us, retry_us, reason = (int(v) for v in raw)
        return Verdict(
            allowed=bool(allowed),
            limit=rpm,
            remaining=remaining,
            reset_seconds=reset_us / 1e6,
            retry_after=retry_us / 1e6,
            reason=_REASONS.get(reason),
        )

    async def add_tokens(self, user_id: str, limit: Limit, tokens: int) -> None:
        if tokens > 0 and limit.tokens_per_minute is not None:
            interval_us = 60e6 / limit.tokens_per_minute
            await self._run(self._add_script, user_id, [interval_us, tokens])

    async def peek(self, user_id: str, limit: Limit) -> Budget | None:
        if limit.unlimited:
            return budget_of(limit, 0.0, 0.0)
        ok, raw = await self._run(self._peek_script, user_id, [])
        if not ok:
            return None
        requests_us, tokens_us = (int(v) for v in raw)
        return budget_of(limit, requests_us / 1e6, tokens_us / 1e6)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _run(self, script: AsyncScript, user_id: str, args: list[float]) -> tuple[bool, Any]:
        """Run one script; on failure report it and return ``(False, None)``."""
        async with self._slots:
            if self._clock() < self._down_until:
                self._failed("circuit_open", None)
                return False, None
            try:
                result = await script(keys=[self._prefix + user_id], args=args)
            except Exception as exc:
                self._failed(self._kind(exc), exc)
                return False, None
        if self._failures:
            self._log.warning(
                "rate limiter: Redis answers again after %d failed call(s)", self._failures
            )
            self._failures = self._unlogged = 0
            self._next_log = -math.inf
        return True, result

    def _failed(self, kind: str, exc: Exception | None) -> None:
        now = self._clock()
        if exc is not None:
            self._down_until = now + self._retry_interval
        self._failures += 1
        self._unlogged += 1
        if self._on_error is not None:
            self._on_error(kind)
        if now >= self._next_log:
            self._next_log = now + self._log_interval
            self._log.warning(
                "rate limiter: Redis failed (%s%s); %s; %d failed call(s) since last report",
                kind,
                f": {type(exc).__name__}: {exc}" if exc is not None else "",
                "allowing requests unlimited" if self._fail_open else "refusing requests",
                self._unlogged,
            )
            self._unlogged = 0

    @staticmethod
    def _kind(exc: Exception) -> str:
        from redis import exceptions as rexc

        if isinstance(exc, rexc.TimeoutError | TimeoutError):
            return "timeout"
        if isinstance(exc, rexc.ConnectionError | OSError):
            return "connection"
        if isinstance(exc, rexc.ResponseError):
            return "response"
        if isinstance(exc, rexc.RedisError):
            return "redis"
        return "other"
