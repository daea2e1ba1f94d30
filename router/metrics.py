"""Per-client Prometheus metrics, built on an injected ``CollectorRegistry``.

Label values are bounded by design: ``route`` is one of the known LLM endpoint
templates or ``other``; ``method`` one of the HTTP methods or ``other``;
``user_id`` the ids in the config plus, up to a cap, ids named by callers — past
the cap a new id is folded into ``__overflow__`` and counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OVERFLOW = "__overflow__"
INVALID = "__invalid__"
CLIENT_CLOSED = "499"

# LLM calls run from milliseconds (cached, tiny) to minutes (long generations).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
OVERHEAD_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/chat/completions",
        "/v1/completions",
        "/completions",
        "/v1/embeddings",
        "/embeddings",
        "/v1/models",
        "/models",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/responses",
        "/v1/moderations",
        "/v1/audio/transcriptions",
        "/v1/audio/speech",
        "/v1/images/generations",
        "/v1/rerank",
        "/rerank",
    }
)
_PREFIX_ROUTES = (
    ("/v1/models/", "/v1/models/{model}"),
    ("/models/", "/models/{model}"),
    ("/v1/responses/", "/v1/responses/{id}"),
)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def route_label(path: str) -> str:
    """The route template for ``path``; never the raw path."""
    if path in ROUTES:
        return path
    for prefix, template in _PREFIX_ROUTES:
        if path.startswith(prefix) and len(path) > len(prefix):
            return template
    return "other"


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


class LabelBudget:
    """Admits label values up to ``cap``; later newcomers fold into ``OVERFLOW``.

    Values in ``always`` (the config's own ids) are admitted without using the cap.
    Memory is bounded by ``cap`` plus the size of ``always``.
    """

    def __init__(self, cap: int, always: Iterable[str] = ()) -> None:
        self.cap = cap
        self._always = frozenset(always)
        self._admitted: set[str] = set()

    def set_always(self, values: Iterable[str]) -> None:
        self._always = frozenset(values)

    def admit(self, value: str) -> str:
        if value in self._always or value in self._admitted:
            return value
        if len(self._admitted) < self.cap:
            self._admitted.add(value)
            return value
        return OVERFLOW


class Children:
    """Memoised ``metric.labels(...)``: one dict lookup per request instead of
    prometheus-client's locked lookup. Label values are bounded, so is this."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._metric.labels(*values)
        return child


class Metrics:
    """Every metric the router exports, registered on one registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_user_ids: int = 100,
        known_user_ids: Iterable[str] = (),
        max_models: int = 50,
    ) -> None:
        self.registry = registry
        self.user_ids = LabelBudget(max_user_ids, known_user_ids)
        self.models = LabelBudget(max_models)
        self.requests = Counter(
            "memory_router_requests",
            "Client requests proxied, counted when the response has finished "
            "(status 499: the client went away first).",
            ["user_id", "route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "memory_router_request_duration_seconds",
            "Time from receiving a request to sending the last response byte.",
            ["user_id", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttfb = Histogram(
            "memory_router_time_to_first_byte_seconds",
            "Time from receiving a request to sending the first response body byte "
            "(time to first token for streams).",
            ["user_id", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "memory_router_overhead_seconds",
            "The router's own time: from receiving a request to sending it upstream.",
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "memory_router_requests_in_flight",
            "Requests being proxied right now.",
            ["user_id"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "memory_router_upstream_errors",
            "Failures talking to LiteLLM, by kind (connect, connect_timeout, timeout, "
            "pool_timeout, reset, protocol).",
            ["user_id", "kind"],
            registry=registry,
        )
        self.decisions = Counter(
            "memory_router_routing_decisions",
            "Routing decisions, by the source that decided the id "
            "(custom_header, pattern, default, custom_code).",
            ["user_id", "source"],
            registry=registry,
        )
        self.tokens = Counter(
            "memory_router_tokens",
            "Tokens reported in responses' usage, by kind (prompt, completion).",
            ["user_id", "model", "kind"],
            registry=registry,
        )
        self.overflow = Counter(
            "memory_router_user_id_overflow",
            f"Requests whose user id was folded into the {OVERFLOW} label value "
            "because the cap on distinct ids was reached.",
            registry=registry,
        )
        self.rate_limited = Counter(
            "memory_router_rate_limited",
            "Requests refused by the per-id rate limit, by the budget that ran out "
            "(requests, tokens; unavailable when the shared limiter is down and fail-closed).",
            ["user_id", "reason"],
            registry=registry,
        )
        self.limiter_errors = Counter(
            "memory_router_rate_limiter_errors",
            "Failures of the shared (Redis) rate limiter, by kind; requests then fail open "
            "unless configured otherwise.",
            ["kind"],
            registry=registry,
        )
        self.rejected = Counter(
            "memory_router_rejected_requests",
            "Requests the router refused before forwarding, by reason.",
            ["reason"],
            registry=registry,
        )

        # Hot-path lookups of the per-request series.
        self.requests_of = Children(self.requests)
        self.duration_of = Children(self.duration)
        self.ttfb_of = Children(self.ttfb)
        self.in_flight_of = Children(self.in_flight)
        self.decisions_of = Children(self.decisions)
        self.tokens_of = Children(self.tokens)

    def user_label(self, user_id: str) -> str:
        label = self.user_ids.admit(user_id)
        if label is OVERFLOW:
            self.overflow.inc()
        return label

    def model_label(self, model: str | None) -> str:
        return self.models.admit(model) if model else "unknown"

    def record_tokens(
        self, user_label: str, model: str | None, prompt: int, completion: int
    ) -> None:
        model_label = self.model_label(model)
        if prompt:
            self.tokens_of(user_label, model_label, "prompt").inc(prompt)
        if completion:
            self.tokens_of(user_label, model_label, "completion").inc(completion)
