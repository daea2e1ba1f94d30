"""Memory metrics on an injected ``CollectorRegistry``.

Every label value comes from a fixed set: the backend's name, the operations and outcomes
below, the retrieval outcomes of ``router.memory.service`` and the drop reasons of
``router.memory.queue``. No user id and no text ever becomes a label.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OPERATIONS = ("search", "store", "list", "forget", "forget_all")
# ok; error: refused or failed; transient: worth a retry; timeout: over the time budget.
OUTCOMES = ("ok", "error", "transient", "timeout")
DROP_REASONS = ("queue_full", "failed", "shutdown")

# Local searches take a millisecond or two, API calls tens to hundreds.
OPERATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INJECTED_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 20)


class MemoryMetrics:
    """The memory subsystem's metrics for one backend."""

    def __init__(self, registry: CollectorRegistry, backend: str) -> None:
        self.backend = backend
        self.operations = Counter(
            "memory_router_memory_operations",
            "Memory backend calls, by backend, operation (search, store, list, forget, "
            "forget_all) and outcome (ok, error, transient, timeout).",
            ["backend", "operation", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "memory_router_memory_operation_duration_seconds",
            "Time a memory backend call took, by backend and operation.",
            ["backend", "operation"],
            buckets=OPERATION_BUCKETS,
            registry=registry,
        )
        self.retrievals = Counter(
            "memory_router_memory_retrievals",
            "Chat requests by what memory did for them (the x-memory-router-memory value).",
            ["backend", "outcome"],
            registry=registry,
        )
        self.injected = Histogram(
            "memory_router_memory_injected",
            "Memories injected into one chat request.",
            ["backend"],
            buckets=INJECTED_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "memory_router_memory_queue_depth",
            "Turns waiting in the background store queue.",
            ["backend"],
            registry=registry,
        )
        self.dropped = Counter(
            "memory_router_memory_store_dropped",
            "Turns that were not stored, by reason (queue_full, failed after retries, "
            "shutdown: still queued when the drain window closed).",
            ["backend", "reason"],
            registry=registry,
        )

    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        """Count one backend call and its duration."""
        self.operations.labels(self.backend, operation, outcome).inc()
        self.latency.labels(self.backend, operation).observe(seconds)

    def retrieval(self, outcome: str, injected: int | None = None) -> None:
        """Count one chat request's outcome; ``injected`` when a block went in."""
        self.retrievals.labels(self.backend, outcome).inc()
        if injected is not None:
            self.injected.labels(self.backend).observe(injected)

    def drop(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped.labels(self.backend, reason).inc(count)

    def track_depth(self, depth: Callable[[], int]) -> None:
        """Read the queue depth from ``depth`` at each scrape."""
        self.queue_depth.labels(self.backend).set_function(lambda: float(depth()))
