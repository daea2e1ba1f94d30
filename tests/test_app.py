"""The app's wiring (router/app.py): which paths are the router's own and which go to LiteLLM."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RouterFactory
from tests.doubles.fake_litellm import FakeUpstream


@pytest.mark.parametrize("path", ["/metrics/", "/metrics/x", "/metrics/litellm?name=a"])
def test_paths_under_metrics_never_reach_litellm(
    start_router: RouterFactory, upstream: FakeUpstream, path: str
) -> None:
    # LiteLLM serves its own metrics under /metrics/ without a key on the stack's
    # network; through the router they would bypass MEMORY_ROUTER_CONTROL_ACCESS.
    _, url = start_router(control_access="token", control_token="ctl-token-123")
    r = httpx.get(url + path)
    # The router's own answer: a redirect to its /metrics, or not found.
    assert r.status_code in (307, 404), r.text
    assert upstream.requests == []
    # A neighbouring path still goes to LiteLLM.
    assert httpx.get(f"{url}/metricsz").status_code == 200
    assert [req.path for req in upstream.requests] == ["/metricsz"]
