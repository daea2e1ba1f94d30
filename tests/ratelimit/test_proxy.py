"""Per-id rate limits through the proxy: in process, shared through a real Redis,
and seen through the real OpenAI and Anthropic SDKs."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.conftest import Launch, RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules
from tests.support.polling import wait_for
from tests.support.redis_server import RedisServer

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


# -- through the proxy, in process ----------------------------------------------------------


def test_requests_over_the_limit_get_429_and_are_not_forwarded(
    start_router: RouterFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = write_rules(
        tmp_path / "r.yaml",
        rate_limits="""
        default: {requests_per_minute: 6, burst: 2}
        per_user_id:
          vip: {requests_per_minute: null}
        """,
    )
    app, url = start_router(config=cfg)
    with caplog.at_level(logging.WARNING, logger="memory_router"):
        statuses = [
            client.post(f"{url}/v1/chat/completions", json=CHAT).status_code for _ in range(2)
        ]
        refused = client.post(f"{url}/v1/chat/completions", json=CHAT)
        refused_anthropic = client.post(f"{url}/v1/messages", json=CHAT)
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "default-dev" in refused.json()["error"]["message"]
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 10  # one request per 10 s
    assert refused.headers["x-ratelimit-limit-requests"] == "6"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert refused_anthropic.status_code == 429
    assert refused_anthropic.json() == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": refused_anthropic.json()["error"]["message"],
        },
    }
    assert len(upstream.requests) == 2
    assert (
        app.metrics.registry.get_sample_value(
            "memory_router_rate_limited_total", {"user_id": "default-dev", "reason": "requests"}
        )
        == 2
    )
    assert any("rate limited" in r.getMessage() for r in caplog.records)
    # another id has its own budget, and an override can lift the limit
    for _ in range(5):
        r = client.post(
            f"{url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "vip"}
        )
        assert r.status_code == 200


def test_token_limit_uses_the_usage_the_router_reads(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path, client: httpx.Client
) -> None:
    # 60 tokens a minute, no token allowance ahead: a response's 18 tokens (11 + 7) put the
    # caller 18 s in debt, so its next request is refused for the tokens
    cfg = write_rules(
        tmp_path / "r.yaml", rate_limits="default: {tokens_per_minute: 60, token_burst: 0}\n"
    )
    app, url = start_router(config=cfg)
    assert client.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
    wait_for(
        lambda: app.metrics.registry.get_sample_value(
            "memory_router_tokens_total", {"user_id": "default-dev", "model": "m", "kind": "prompt"}
        )
    )
    refused = client.post(f"{url}/v1/chat/completions", json=CHAT)
    assert refused.status_code == 429
    assert "tokens" in refused.json()["error"]["message"]
    assert 15 <= int(refused.headers["retry-after"]) <= 19
    assert "x-ratelimit-limit-requests" not in refused.headers  # no request limit here
    assert (
        app.metrics.registry.get_sample_value(
            "memory_router_rate_limited_total", {"user_id": "default-dev", "reason": "tokens"}
        )
        == 1
    )


def test_sdks_see_a_429_they_understand(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    import anthropic
    import openai

    cfg = write_rules(
        tmp_path / "r.yaml", rate_limits="default: {requests_per_minute: 60, burst: 1}\n"
    )
    app, url = start_router(config=cfg)

    def refusals() -> float:
        labels = {"user_id": "default-dev", "reason": "requests"}
        return (
            app.metrics.registry.get_sample_value("memory_router_rate_limited_total", labels) or 0
        )

    no_retry = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    no_retry.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
    with pytest.raises(openai.RateLimitError) as caught:
        no_retry.chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}])
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"

    # with retries on, the SDK waits for Retry-After and gets through
    retrying = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=3)
    before = refusals()
    reply = retrying.chat.completions.create(model="m", messages=[{"role": "user", "content": "c"}])
    assert reply.choices[0].message.content == "hello from fake"
    assert refusals() > before  # refused first, then let through on a retry

    an = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused:
        an.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "d"}])
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    an_retrying = anthropic.Anthropic(base_url=url, api_key="k", max_retries=3)
    message = an_retrying.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "e"}]
    )
    assert message.content[0].text == "hello from fake"  # type: ignore[union-attr]
    for c in (no_retry, retrying, an, an_retrying):
        c.close()


# -- shared through Redis --------------------------------------------------------------


def test_two_router_processes_share_one_limit(
    launch: Launch,
    own_redis: RedisServer,
    upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    cfg = write_rules(
        tmp_path / "r.yaml", rate_limits="default: {requests_per_minute: 6, burst: 3}\n"
    )
    one = launch(cfg, REDIS_URL=own_redis.url)
    two = launch(cfg, REDIS_URL=own_redis.url)
    with httpx.Client(timeout=10) as c:
        statuses = [
            c.post(f"{router.url}/v1/chat/completions", json=CHAT).status_code
            for router in (one, two, one, two, one, two)
        ]
    assert statuses.count(200) == 3, statuses
    assert statuses.count(429) == 3
    assert len(upstream.requests) == 3


def test_redis_down_fails_open_then_recovers(
    start_router: RouterFactory,
    own_redis: RedisServer,
    upstream: FakeUpstream,
    tmp_path: Path,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = write_rules(
        tmp_path / "r.yaml", rate_limits="default: {requests_per_minute: 6, burst: 1}\n"
    )
    app, url = start_router(config=cfg, redis_url=own_redis.url)
    assert client.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
    assert client.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 429

    own_redis.kill()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert client.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
    errors = sum(
        s.value
        for f in app.metrics.registry.collect()
        if f.name == "memory_router_rate_limiter_errors"
        for s in f.samples
        if s.name.endswith("_total")
    )
    assert errors >= 1
    assert any(
        r.levelno == logging.WARNING and "redis" in r.getMessage().lower() for r in caplog.records
    )

    own_redis.start()  # same port, empty: every budget full again

    def limiting_again() -> bool:
        return client.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 429

    wait_for(limiting_again, timeout=10, interval=0.3)


def test_redis_down_can_fail_closed(
    start_router: RouterFactory,
    own_redis: RedisServer,
    upstream: FakeUpstream,
    tmp_path: Path,
    client: httpx.Client,
) -> None:
    cfg = write_rules(tmp_path / "r.yaml", rate_limits="default: {requests_per_minute: 600}\n")
    _, url = start_router(config=cfg, redis_url=own_redis.url, rate_limit_fail_open=False)
    assert client.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
    own_redis.kill()
    r = client.post(f"{url}/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "rate_limiter_unavailable"
    assert r.headers["retry-after"] == "1"
    assert len(upstream.requests) == 1
