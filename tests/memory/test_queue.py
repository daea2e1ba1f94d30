"""The background store queue, with real backends: the v5 double (which can fail or hold
requests on demand) and the local SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from router.memory.backend import Turn
from router.memory.local import LocalBackend
from router.memory.metrics import MemoryMetrics
from router.memory.queue import StoreQueue, backoff_delay
from router.memory.supermemory_api import SupermemoryApiBackend
from tests.memory.conftest import Double, backend_metric
from tests.support.polling import await_until


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (30, 10.0)],
)
def test_backoff_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, base=0.5, cap=10.0, jitter=False) == expected


@given(attempt=st.integers(min_value=0, max_value=40))
def test_jittered_backoff_stays_within_half_and_full(attempt: int) -> None:
    full = backoff_delay(attempt, base=0.5, cap=10.0, jitter=False)
    assert full / 2 <= backoff_delay(attempt, base=0.5, cap=10.0) <= full


class Fixture:
    def __init__(self, registry: CollectorRegistry, backend_name: str) -> None:
        self.registry = registry
        self.backend = backend_name

    def value(self, name: str, **labels: str) -> float:
        return backend_metric(self.registry, name, self.backend, **labels)


@pytest.fixture
async def api_queue(
    api_backend: SupermemoryApiBackend, registry: CollectorRegistry
) -> AsyncIterator[StoreQueue]:
    queue = StoreQueue(
        api_backend, MemoryMetrics(registry, api_backend.name), maxsize=3, attempts=3, backoff=0
    )
    queue.start()
    yield queue
    await queue.close(0)


def metrics(registry: CollectorRegistry) -> Fixture:
    return Fixture(registry, "supermemory-api")


async def test_submit_returns_at_once_while_the_backend_is_busy(
    api_queue: StoreQueue, double: Double
) -> None:
    double.state.hold.add("add")

    assert api_queue.submit("alice", Turn("held", "ok")) is True
    await await_until(lambda: double.state.held == 1)
    assert api_queue.submit("alice", Turn("also queued", "ok")) is True
    assert double.state.texts("alice") == []

    double.state.release.set()
    await api_queue.join()
    assert sorted(double.state.texts("alice")) == [
        "User: also queued\nAssistant: ok",
        "User: held\nAssistant: ok",
    ]


async def test_transient_failures_are_retried(
    api_queue: StoreQueue, double: Double, registry: CollectorRegistry
) -> None:
    double.state.fail_next.extend([503, 429])

    api_queue.submit("alice", Turn("eventually", "stored"))
    await api_queue.join()

    assert len(double.requests_for("add")) == 3
    assert double.state.texts("alice") == ["User: eventually\nAssistant: stored"]
    m = metrics(registry)
    name = "memory_router_memory_operations_total"
    assert m.value(name, operation="store", outcome="transient") == 2
    assert m.value(name, operation="store", outcome="ok") == 1
    assert m.value("memory_router_memory_store_dropped_total", reason="failed") == 0


async def test_a_turn_is_dropped_after_the_last_attempt(
    api_queue: StoreQueue, double: Double, registry: CollectorRegistry
) -> None:
    double.state.fail_next.extend([503, 503, 503])

    api_queue.submit("alice", Turn("lost", "x"))
    api_queue.submit("alice", Turn("next one", "fine"))
    await api_queue.join()

    assert len(double.requests_for("add")) == 4
    assert double.state.texts("alice") == ["User: next one\nAssistant: fine"]
    assert metrics(registry).value("memory_router_memory_store_dropped_total", reason="failed") == 1


async def test_a_refusal_is_not_retried(
    api_queue: StoreQueue, double: Double, registry: CollectorRegistry
) -> None:
    double.state.fail_next.append(400)

    api_queue.submit("alice", Turn("refused", "x"))
    await api_queue.join()

    assert len(double.requests_for("add")) == 1
    m = metrics(registry)
    assert m.value("memory_router_memory_operations_total", operation="store", outcome="error") == 1
    assert m.value("memory_router_memory_store_dropped_total", reason="failed") == 1


async def test_a_full_queue_drops_and_counts(
    api_queue: StoreQueue, double: Double, registry: CollectorRegistry
) -> None:
    double.state.hold.add("add")
    api_queue.submit("alice", Turn("in flight", "x"))
    await await_until(lambda: double.state.held == 1)

    accepted = [api_queue.submit("alice", Turn(f"queued {i}", "x")) for i in range(4)]

    assert accepted == [True, True, True, False]
    m = metrics(registry)
    assert m.value("memory_router_memory_store_dropped_total", reason="queue_full") == 1
    assert m.value("memory_router_memory_queue_depth") == 3
    double.state.release.set()
    await api_queue.join()
    assert m.value("memory_router_memory_queue_depth") == 0
    assert len(double.state.texts("alice")) == 4


async def test_close_counts_what_the_drain_window_left(
    api_backend: SupermemoryApiBackend, double: Double, registry: CollectorRegistry
) -> None:
    queue = StoreQueue(api_backend, MemoryMetrics(registry, api_backend.name), backoff=0)
    queue.start()
    double.state.hold.add("add")
    for i in range(3):
        queue.submit("alice", Turn(f"turn {i}", "x"))
    await await_until(lambda: double.state.held == 1)

    lost = await queue.close(0.05)

    assert lost == 3
    assert queue.submit("alice", Turn("too late", "x")) is False
    assert (
        metrics(registry).value("memory_router_memory_store_dropped_total", reason="shutdown") == 4
    )
    assert await queue.close(1) == 0  # closing again loses nothing more


async def test_close_drains_everything_within_the_window(
    local_backend: LocalBackend, registry: CollectorRegistry
) -> None:
    queue = StoreQueue(local_backend, MemoryMetrics(registry, "local"), maxsize=100)
    queue.start()
    for i in range(20):
        assert queue.submit("alice", Turn(f"turn {i}", "x"))

    assert await queue.close(10) == 0

    assert len(await local_backend.list("alice")) == 20
    assert queue.stored == 20
    assert (
        Fixture(registry, "local").value(
            "memory_router_memory_store_dropped_total", reason="shutdown"
        )
        == 0
    )


async def test_a_queue_never_started_loses_what_it_holds(
    local_backend: LocalBackend, registry: CollectorRegistry
) -> None:
    queue = StoreQueue(local_backend, MemoryMetrics(registry, "local"))
    queue.submit("alice", Turn("never stored", "x"))
    assert await queue.close(1) == 1
