"""docker-compose.replicas.yml, unchanged, on a real engine: three routers behind the
nginx balancer, one Redis budget.

The tests run in file order against one stack; the later ones kill a replica and stop
Redis. The rules copy gives `live-burst` and `live-redis-down` a burst of 5 requests and
1 a minute after that (conftest.REPLICA_LIMITS).
"""

from __future__ import annotations

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import (
    Clients,
    assert_streamed_in_lockstep,
    chat,
    nonce,
    openai_stream_in_lockstep,
)

from .conftest import ReplicasStack
from .stack import docker, wait_until

pytestmark = pytest.mark.live

REPLICAS = 3
SCRAPE_WAIT = 60.0
METRICS_CODE = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://127.0.0.1:8765/metrics', timeout=5).read().decode())"
)


def client(clients: Clients, stack: ReplicasStack, user_id: str) -> openai.OpenAI:
    return clients.openai(stack.lb_url, stack.keys.litellm_master, {"x-memory-user-id": user_id})


Sample = tuple[str, dict[str, str], float]


def replica_metrics(stack: ReplicasStack) -> dict[str, list[Sample]]:
    """Each running replica's own /metrics (they are not published): container -> samples."""
    out: dict[str, list[Sample]] = {}
    for container in stack.stack.containers("router"):
        text = stack.stack.python_in(container, METRICS_CODE)
        out[container] = [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    return out


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        value
        for sample, sample_labels, value in samples
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def test_every_replica_comes_up_healthy(replicas_stack: ReplicasStack) -> None:
    stack = replicas_stack.stack
    routers = stack.containers("router")
    assert len(routers) == REPLICAS
    for container in [*routers, *stack.containers("redis"), *stack.containers("litellm")]:
        assert stack.inspect(container)["State"]["Health"]["Status"] == "healthy"
    (lb,) = stack.containers("lb")
    assert stack.inspect(lb)["State"]["Status"] == "running"


def test_replicas_share_one_redis_budget(replicas_stack: ReplicasStack, clients: Clients) -> None:
    marker = nonce()
    burst = client(clients, replicas_stack, "live-burst")
    outcomes: list[str] = []
    for i in range(15):
        try:
            chat(burst, f"burst {marker} #{i}")
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("429")
    assert outcomes == ["ok"] * 5 + ["429"] * 10

    per_replica = replica_metrics(replicas_stack)
    served = {
        container: total(samples, "memory_router_requests_total", user_id="live-burst")
        for container, samples in per_replica.items()
    }
    admitted = sum(
        total(samples, "memory_router_requests_total", user_id="live-burst", status="200")
        for samples in per_replica.values()
    )
    refused = sum(
        total(samples, "memory_router_rate_limited_total", user_id="live-burst")
        for samples in per_replica.values()
    )
    assert (admitted, refused) == (5, 10)
    # The budget was shared, not merely kept by one replica that got every request.
    assert sum(1 for count in served.values() if count) >= 2, served
    assert len(replicas_stack.double.requests_with(f"burst {marker}")) == 5


def test_streams_pass_the_balancer_unbuffered(
    replicas_stack: ReplicasStack, clients: Clients
) -> None:
    marker = nonce()
    question = f"stream {marker}"
    # The next chunk only once this one is read.
    sdk = client(clients, replicas_stack, "live-stream")
    pieces = openai_stream_in_lockstep(sdk, replicas_stack.double, marker, question)
    assert_streamed_in_lockstep(pieces, question)


def test_prometheus_scrapes_every_replica(replicas_stack: ReplicasStack) -> None:
    def all_up() -> list[dict[str, object]] | None:
        targets = replicas_stack.prometheus.targets()
        routers = [t for t in targets if t["labels"]["job"] == "memory-router"]
        ready = len(routers) == REPLICAS and all(t["health"] == "up" for t in targets)
        return targets if ready else None

    targets = wait_until("3 router targets and every other target up", all_up, SCRAPE_WAIT)
    assert {t["labels"]["job"] for t in targets} == {"memory-router", "litellm", "prometheus"}


def test_requests_keep_succeeding_with_a_replica_killed(
    replicas_stack: ReplicasStack, clients: Clients
) -> None:
    stack = replicas_stack.stack
    victim = stack.containers("router")[0]
    docker("kill", victim)
    assert victim not in stack.containers("router")
    marker = nonce()
    user = client(clients, replicas_stack, "live-survivor")
    answers = [chat(user, f"after the kill {marker} #{i}") for i in range(9)]
    assert all(f"after the kill {marker}" in answer for answer in answers)
    assert len(replicas_stack.double.requests_with(f"after the kill {marker}")) == 9


def test_with_redis_stopped_requests_fail_open_and_are_counted(
    replicas_stack: ReplicasStack, clients: Clients
) -> None:
    stack = replicas_stack.stack
    # The replicas running now (two, after the previous test killed one).
    before = replica_metrics(replicas_stack)
    stack.run("stop", "redis", timeout=60)
    try:
        marker = nonce()
        user = client(clients, replicas_stack, "live-redis-down")
        # Twice the burst: with Redis up, 5 would be admitted and 5 refused.
        for i in range(10):
            chat(user, f"redis down {marker} #{i}")
        after = replica_metrics(replicas_stack)
    finally:
        stack.run("start", "redis", timeout=60)
    assert set(after) == set(before)
    errors = sum(
        total(after[c], "memory_router_rate_limiter_errors_total")
        - total(before[c], "memory_router_rate_limiter_errors_total")
        for c in after
    )
    # One failed (or skipped, while Redis is known down) limiter call per request.
    assert errors == 10
    refused = [
        total(samples, "memory_router_rate_limited_total", user_id="live-redis-down")
        for samples in after.values()
    ]
    assert sum(refused) == 0
    logs = stack.logs("router")
    assert "rate limiter: Redis failed" in logs and "allowing requests unlimited" in logs
