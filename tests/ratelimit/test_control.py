"""The caller's rate limit in ``/memory-routing/info`` (router/control.py): the limit its
id has and what is left of it now, read without taking any, in process and through a
real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import RouterFactory
from tests.support.configs import write_rules
from tests.support.redis_server import RedisServer

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
# One request a minute, one token every 10 s: nothing refills while a test runs.
LIMITS = """
default: {requests_per_minute: 1, burst: 3, tokens_per_minute: 6, token_burst: 100}
per_user_id:
  unlimited-app: {requests_per_minute: null, tokens_per_minute: null}
"""


def info(client: httpx.Client, url: str, user_id: str | None = None) -> dict[str, Any]:
    headers = {"x-memory-user-id": user_id} if user_id else {}
    answer = client.get(f"{url}/memory-routing/info", headers=headers)
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


def chat(client: httpx.Client, url: str) -> int:
    return client.post(f"{url}/v1/chat/completions", json=CHAT).status_code


def test_info_shows_the_callers_limit_and_what_is_left(
    start_router: RouterFactory, tmp_path: Path, client: httpx.Client
) -> None:
    _, url = start_router(config=write_rules(tmp_path / "r.yaml", rate_limits=LIMITS))
    fresh = info(client, url)["rate_limit"]
    assert fresh == {
        "requests_per_minute": 1,
        "burst": 3,
        "tokens_per_minute": 6,
        "token_burst": 100,
        "remaining": {
            "requests": 3,
            "tokens": 100,
            "requests_full_in_seconds": 0.0,
            "tokens_full_in_seconds": 0.0,
        },
    }
    assert chat(client, url) == 200  # the fake LiteLLM's answer uses 11 + 7 tokens
    for _ in range(5):  # asking takes nothing
        left = info(client, url)["rate_limit"]["remaining"]
        assert (left["requests"], left["tokens"]) == (2, 82)
        assert 59 < left["requests_full_in_seconds"] <= 60
    assert [chat(client, url) for _ in range(2)] == [200, 200]
    assert info(client, url)["rate_limit"]["remaining"]["requests"] == 0
    assert chat(client, url) == 429  # as info said
    # Another id has its own budget; one without limits has none to show.
    assert info(client, url, "someone-else")["rate_limit"]["remaining"]["requests"] == 3
    assert info(client, url, "unlimited-app")["rate_limit"] is None


def test_info_without_rate_limits_shows_none(
    start_router: RouterFactory, tmp_path: Path, client: httpx.Client
) -> None:
    _, url = start_router(config=write_rules(tmp_path / "r.yaml"))
    assert info(client, url)["rate_limit"] is None


def test_info_reads_the_budget_shared_in_redis(
    start_router: RouterFactory, tmp_path: Path, own_redis: RedisServer, client: httpx.Client
) -> None:
    cfg = write_rules(tmp_path / "r.yaml", rate_limits=LIMITS)
    _, one = start_router(config=cfg, redis_url=own_redis.url)
    _, two = start_router(config=cfg, redis_url=own_redis.url)
    assert chat(client, one) == 200
    for url in (one, two, two):  # the other replica sees it too, and asking takes nothing
        left = info(client, url)["rate_limit"]["remaining"]
        assert (left["requests"], left["tokens"]) == (2, 82)
    own_redis.kill()
    down = info(client, two)["rate_limit"]
    assert down["requests_per_minute"] == 1 and down["remaining"] is None  # cannot tell
