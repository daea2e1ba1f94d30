"""Building a limiter (``build_rate_limiter``, router/ratelimit/__init__.py), and running
without the optional ``redis`` package (an extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from router.exceptions import MissingDependency
from router.ratelimit import MemoryRateLimiter, RedisRateLimiter, build_rate_limiter
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules
from tests.support.environment import clean_env
from tests.support.ports import free_port
from tests.support.processes import Process, start_process
from tests.support.router_process import router_argv


async def test_no_url_builds_an_in_process_limiter() -> None:
    assert isinstance(build_rate_limiter(None, fail_open=True, on_error=None), MemoryRateLimiter)
    assert isinstance(build_rate_limiter("", fail_open=False, on_error=None), MemoryRateLimiter)


async def test_a_url_builds_a_redis_limiter_without_connecting() -> None:
    limiter = build_rate_limiter("redis://127.0.0.1:1/0", fail_open=True, on_error=print)
    assert isinstance(limiter, RedisRateLimiter)
    await limiter.aclose()


def test_a_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        build_rate_limiter("http://example.invalid", fail_open=True, on_error=None)


def test_redis_limiter_without_the_package_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("redis", "redis.asyncio", "redis.asyncio.retry", "redis.backoff"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependency, match=r"REDIS_URL.*pip install 'memory-router\[redis\]'"):
        build_rate_limiter("redis://127.0.0.1:1/0", fail_open=True, on_error=None)


# The CLI in a process where ``import redis`` fails, as after ``pip install memory-router``.
WITHOUT_REDIS = (
    "import sys\n"
    "sys.modules['redis'] = None\n"
    "from router.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _serve_without_redis(
    upstream_url: str, config: Path, port: int, **env: str
) -> Process:
    argv = [sys.executable, "-c", WITHOUT_REDIS]
    argv += router_argv(port, upstream_url, config=config, command=[])
    return start_process(
        "router-without-redis",
        argv,
        log_dir=config.parent,
        env=clean_env(**env),
    )


def test_the_router_serves_and_limits_in_process_without_redis(
    upstream: FakeUpstream, upstream_url: str, tmp_path: Path
) -> None:
    config = write_rules(
        tmp_path / "rules.yaml",
        "default_user_id: d",
        rate_limits="default: {requests_per_minute: 6, burst: 1}",
    )
    port = free_port()
    router = _serve_without_redis(upstream_url, config, port)
    url = f"http://127.0.0.1:{port}"
    try:
        router.wait_http_ok(f"{url}/health")
        statuses = [httpx.post(f"{url}/v1/chat/completions", json={}).status_code for _ in "ab"]
        assert statuses == [200, 429]
        assert len(upstream.requests) == 1
    finally:
        status = router.stop()
    assert status == 0, router.log()


def test_redis_url_without_the_package_is_a_clear_startup_error(
    upstream_url: str, tmp_path: Path
) -> None:
    config = write_rules(tmp_path / "rules.yaml", "default_user_id: d")
    router = _serve_without_redis(
        upstream_url, config, free_port(), REDIS_URL="redis://127.0.0.1:1/0"
    )
    router.popen.wait(60)
    output = router.log()
    assert router.popen.returncode == 2, output
    assert (
        "memory-router: rate limits shared through Redis (REDIS_URL) need the 'redis' package, "
        "which is not installed: pip install 'memory-router[redis]'"
    ) in output
    assert "Traceback" not in output
