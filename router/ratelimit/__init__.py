"""Per-user-id rate limiting with GCRA, in process or shared through Redis.

Why not the ``limits`` package: limits (5.x) offers fixed window, moving window and
sliding window counter strategies over memory, Redis, Memcached and MongoDB, but no GCRA
or token bucket; its ``hit(item, *ids, cost=n)`` must know the cost when the request
starts, while token usage is only known when the response ends; and it cannot, in one
atomic step, refuse on one budget (tokens) and take from another (requests). So this
module implements GCRA itself: one theoretical arrival time (TAT) per budget, updated
by plain arithmetic in process or by one Lua script per operation in Redis.

GCRA in brief: a budget with emission interval ``T`` (60 / per-minute rate) and
tolerance ``tau`` (``burst * T``) admits a request of cost ``c`` at time ``now`` when
``max(tat, now) + c*T <= now + tau``, and then stores that sum as the new TAT. A TAT in
the past is the same as a fresh, full budget, so stale state can be dropped at any time.
"""

from __future__ import annotations

import logging

from router.ratelimit.memory import MemoryRateLimiter
from router.ratelimit.redis_limiter import (
    DEFAULT_PREFIX,
    LOGGER_NAME,
    ErrorCallback,
    RedisRateLimiter,
)
from router.ratelimit.types import Budget, Limit, RateLimiter, Verdict

__all__ = [
    "DEFAULT_PREFIX",
    "LOGGER_NAME",
    "Budget",
    "ErrorCallback",
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "Verdict",
    "build_rate_limiter",
]


def build_rate_limiter(
    redis_url: str | None,
    *,
    fail_open: bool = True,
    on_error: ErrorCallback | None = None,
    logger: logging.Logger | None = None,
) -> RateLimiter:
    """A Redis-backed limiter when ``redis_url`` is set, else an in-process one.

    Redis is an optional package (``memory-router[redis]``): without it, a URL
    raises ``MissingDependency`` saying what to install."""
    if redis_url:
        return RedisRateLimiter(redis_url, fail_open=fail_open, on_error=on_error, logger=logger)
    return MemoryRateLimiter()
