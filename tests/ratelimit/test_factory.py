"""Building a limiter, and running without the optional ``redis`` package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from router.ratelimit import MemoryRateLimiter, RedisRateLimiter, build_rate_limiter

REPO = Path(__file__).resolve().parents[2]


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
    with pytest.raises(RuntimeError, match="redis"):
        RedisRateLimiter("redis://127.0.0.1:1/0")


def test_the_router_imports_and_limits_in_process_without_redis() -> None:
    code = (
        "import sys, asyncio\n"
        "sys.modules['redis'] = None\n"
        "from router.ratelimit import Limit, build_rate_limiter\n"
        "rl = build_rate_limiter(None, fail_open=True, on_error=None)\n"
        "print(asyncio.run(rl.check('u', Limit(requests_per_minute=60))).allowed)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_the_ratelimit_package_is_shipped_by_setuptools() -> None:
    """``[tool.setuptools] packages`` is an explicit list: a subpackage missing from it
    is left out of non-editable installs (the Docker image)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"].get("packages")
    if isinstance(packages, list):  # absent or {"find": ...} discover subpackages
        assert "router.ratelimit" in packages, packages
