"""MemoryMetrics on a fresh registry: names, labels and values as Prometheus exposes them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from router.memory.metrics import MemoryMetrics


def test_operations_and_latency() -> None:
    registry = CollectorRegistry()
    metrics = MemoryMetrics(registry, "local")

    metrics.observe("search", "ok", 0.002)
    metrics.observe("search", "ok", 0.2)
    metrics.observe("search", "timeout", 0.3)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"backend": "local", **labels})

    assert value("memory_router_memory_operations_total", operation="search", outcome="ok") == 2
    assert (
        value("memory_router_memory_operations_total", operation="search", outcome="timeout") == 1
    )
    assert value("memory_router_memory_operation_duration_seconds_count", operation="search") == 3
    assert (
        value(
            "memory_router_memory_operation_duration_seconds_bucket", operation="search", le="0.005"
        )
        == 1
    )


def test_retrievals_and_injected() -> None:
    registry = CollectorRegistry()
    metrics = MemoryMetrics(registry, "supermemory-api")

    metrics.retrieval("injected", 3)
    metrics.retrieval("none", 0)
    metrics.retrieval("skipped-timeout")

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"backend": "supermemory-api", **labels})

    assert value("memory_router_memory_retrievals_total", outcome="injected") == 1
    assert value("memory_router_memory_retrievals_total", outcome="skipped-timeout") == 1
    assert value("memory_router_memory_injected_count") == 2
    assert value("memory_router_memory_injected_sum") == 3


def test_drops_and_depth() -> None:
    registry = CollectorRegistry()
    metrics = MemoryMetrics(registry, "local")
    depth = [0]
    metrics.track_depth(lambda: depth[0])

    metrics.drop("queue_full")
    metrics.drop("shutdown", 4)
    metrics.drop("failed", 0)
    depth[0] = 7

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"backend": "local", **labels})

    assert value("memory_router_memory_store_dropped_total", reason="queue_full") == 1
    assert value("memory_router_memory_store_dropped_total", reason="shutdown") == 4
    assert value("memory_router_memory_store_dropped_total", reason="failed") is None
    assert value("memory_router_memory_queue_depth") == 7


def test_no_user_id_or_text_in_any_label() -> None:
    registry = CollectorRegistry()
    metrics = MemoryMetrics(registry, "local")
    metrics.observe("store", "ok", 0.01)
    metrics.retrieval("injected", 1)
    exposed = generate_latest(registry).decode()
    labels = {
        part.split("=")[0]
        for line in exposed.splitlines()
        if "{" in line and not line.startswith("#")
        for part in line[line.index("{") + 1 : line.index("}")].split(",")
    }
    assert labels <= {"backend", "operation", "outcome", "reason", "le"}
