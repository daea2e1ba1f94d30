"""The router's own endpoints (router/control.py): health, readiness, routing info, and who may
reach them."""

from __future__ import annotations

import httpx
import pytest

from router.app import RouterApp
from tests.conftest import SM_KEY, RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.ports import free_port

JAVA_UA = "OpenAIClientImpl/Java unknown"


@pytest.mark.parametrize("mode", ["loopback", "token"])
def test_control_endpoints_can_be_protected(
    start_router: RouterFactory, upstream: FakeUpstream, mode: str
) -> None:
    _, url = start_router(control_access=mode, control_token="ctl-token-123")
    good = {"Authorization": "Bearer ctl-token-123"}
    bad = {"Authorization": "Bearer nope"}
    for path in ("/metrics", "/memory-routing/info"):
        # the tests call from 127.0.0.1: loopback passes, token mode needs the token
        assert httpx.get(url + path).status_code == (200 if mode == "loopback" else 403)
        assert httpx.get(url + path, headers=good).status_code == 200
        if mode == "token":
            r = httpx.get(url + path, headers=bad)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{url}/health").status_code == 200


def test_loopback_guard_refuses_other_addresses() -> None:
    from starlette.requests import Request

    from router.control import access_guard
    from router.exceptions import Forbidden
    from router.settings import Settings

    guard = access_guard(Settings(_env_file=None, control_access="loopback"))  # type: ignore[call-arg]

    def request(host: str) -> Request:
        return Request({"type": "http", "headers": [], "client": (host, 1234)})

    guard(request("127.0.0.1"))
    guard(request("::1"))
    for host in ("10.0.0.5", "192.168.1.2", "203.0.113.9", "not-an-ip"):
        with pytest.raises(Forbidden):
            guard(request(host))


def test_key_never_in_control_endpoints(
    router_app: tuple[RouterApp, str], client: httpx.Client
) -> None:
    _, url = router_app
    for path in ("/health", "/health/readiness", "/metrics", "/memory-routing/info"):
        r = client.get(url + path)
        assert SM_KEY not in r.text and SM_KEY not in str(r.headers)


def test_routing_info_endpoint(router_app: tuple[RouterApp, str], client: httpx.Client) -> None:
    _, url = router_app
    info = client.get(f"{url}/memory-routing/info", headers={"User-Agent": JAVA_UA}).json()
    assert info["user_id"] == "pycharm-ai-chat"
    assert info["matched_pattern"]["pattern"].startswith("^OpenAIClient")
    assert info["supermemory_key_configured"] is True
    info = client.get(
        f"{url}/memory-routing/info", headers={"x-memory-user-id": "my-project"}
    ).json()
    assert (info["user_id"], info["custom_header_present"]) == ("my-project", True)
    info = client.get(f"{url}/memory-routing/info", headers={"User-Agent": "curl/7.68.0"}).json()
    assert (info["user_id"], info["is_default"]) == ("default-dev", True)
    r = client.get(f"{url}/memory-routing/info", headers={"x-memory-user-id": "bad id"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_user_id"


def test_health_does_not_call_upstream(start_router: RouterFactory, client: httpx.Client) -> None:
    _, url = start_router(litellm_url=f"http://127.0.0.1:{free_port()}")
    assert client.get(f"{url}/health").json() == {"status": "ok"}
    r = client.get(f"{url}/health/readiness")
    assert r.status_code == 503
    assert r.json()["checks"]["litellm"] == "unreachable"


def test_readiness_ok(
    router_app: tuple[RouterApp, str], upstream: FakeUpstream, client: httpx.Client
) -> None:
    _, url = router_app
    r = client.get(f"{url}/health/readiness")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert upstream.last().path == "/health/liveliness"
