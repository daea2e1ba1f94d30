"""Reading the router's metrics in tests: exact sample values, and waiting for the
server to finish recording a request (it does so just after the last byte)."""

from __future__ import annotations

from router.app import RouterApp
from tests.support.polling import wait_for


def value(app: RouterApp, name: str, **labels: str) -> float | None:
    return app.metrics.registry.get_sample_value(name, labels)


def settle(app: RouterApp, count: int) -> None:
    """Wait until ``count`` requests have finished: the server records each one
    just after its last byte, so a client can be a moment ahead of the counter."""

    def total() -> float:
        families = app.metrics.registry.collect()
        return sum(
            s.value
            for f in families
            if f.name == "memory_router_requests"
            for s in f.samples
            if s.name == "memory_router_requests_total"
        )

    wait_for(lambda: total() >= count)
    assert total() == count


def requests(app: RouterApp, user: str, route: str, status: str, method: str = "POST") -> float:
    v = value(
        app,
        "memory_router_requests_total",
        user_id=user,
        route=route,
        method=method,
        status=status,
    )
    return v or 0.0
