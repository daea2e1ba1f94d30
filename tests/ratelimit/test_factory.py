"""Building a limiter, and running without the optional ``redis`` package (an extra)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from router.exceptions import MissingDependency
from router.ratelimit import MemoryRateLimiter, RedisRateLimiter, build_rate_limiter
from tests.fake_upstream import FakeUpstream
from tests.redis_server import free_port
from tests.servers import wait_for

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
) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MEMORY_ROUTER_", "REDIS"))}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WITHOUT_REDIS,
            "serve",
            "--port",
            str(port),
            "--config",
            str(config),
            "--litellm-url",
            upstream_url,
        ],
        env={**base, **env},
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_router_serves_and_limits_in_process_without_redis(
    upstream: FakeUpstream, upstream_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(
        "user_id_mappings: {default_user_id: d}\n"
        "rate_limits: {default: {requests_per_minute: 6, burst: 1}}\n"
    )
    port = free_port()
    proc = _serve_without_redis(upstream_url, config, port)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                return httpx.get(f"{url}/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30)
        statuses = [httpx.post(f"{url}/v1/chat/completions", json={}).status_code for _ in "ab"]
        assert statuses == [200, 429]
        assert len(upstream.requests) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=10)[0]
    assert proc.returncode == 0, output


def test_redis_url_without_the_package_is_a_clear_startup_error(
    upstream_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text("user_id_mappings: {default_user_id: d}\n")
    proc = _serve_without_redis(
        upstream_url, config, free_port(), REDIS_URL="redis://127.0.0.1:1/0"
    )
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 2, output
    assert (
        "memory-router: rate limits shared through Redis (REDIS_URL) need the 'redis' package, "
        "which is not installed: pip install 'memory-router[redis]'"
    ) in output
    assert "Traceback" not in output


def test_redis_is_an_extra_that_the_tests_install() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("redis") for d in project["dependencies"])
    assert [d for d in project["optional-dependencies"]["redis"] if d.startswith("redis")]
    assert "memory-router[redis]" in project["optional-dependencies"]["test"]


def test_the_ratelimit_package_is_shipped_by_setuptools() -> None:
    """``[tool.setuptools] packages`` is an explicit list: a subpackage missing from it
    is left out of non-editable installs (the Docker image)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"].get("packages")
    if isinstance(packages, list):  # absent or {"find": ...} discover subpackages
        assert "router.ratelimit" in packages, packages
