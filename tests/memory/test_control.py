"""GET and DELETE /memory-routing/memories on a real uvicorn server: always the caller's
own id, decided as the proxy decides it, under the control endpoints' access rules."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from router.app import RouterApp
from tests.conftest import RouterFactory
from tests.memory.conftest import Double, seed

MEMORIES = "/memory-routing/memories"
JAVA_UA = "OpenAIClientImpl/Java unknown"
ALICE = {"x-memory-user-id": "alice"}


def texts(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [m["text"] for m in answer.json()["memories"]]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "memories.sqlite3"


@pytest.fixture
def local(start_router: RouterFactory, store_path: Path) -> tuple[RouterApp, str]:
    app, url = start_router(memory_backend="local", memory_local_path=store_path)
    seed(store_path, "alice", "my cat is called Ziggy", "I prefer tabs")
    seed(store_path, "bob", "my cat is called Tom")
    seed(store_path, "pycharm-ai-chat", "the project uses poetry")
    return app, url


def test_a_caller_lists_and_searches_its_own_memories_only(local: tuple[RouterApp, str]) -> None:
    _, url = local
    listed = httpx.get(url + MEMORIES, headers=ALICE)
    assert listed.json()["user_id"] == "alice" and listed.json()["backend"] == "local"
    assert texts(listed) == [
        "User: I prefer tabs\nAssistant: noted",
        "User: my cat is called Ziggy\nAssistant: noted",
    ]
    found = httpx.get(url + MEMORIES, params={"q": "cat"}, headers=ALICE)
    assert texts(found) == ["User: my cat is called Ziggy\nAssistant: noted"]
    assert found.json()["query"] == "cat"
    assert texts(httpx.get(url + MEMORIES, params={"limit": "1"}, headers=ALICE)) == [
        "User: I prefer tabs\nAssistant: noted"
    ]
    # The id comes from the identity rules, here the User-Agent rule: no parameter names one.
    jetbrains = httpx.get(
        url + MEMORIES, params={"user_id": "alice", "q": "cat"}, headers={"User-Agent": JAVA_UA}
    )
    assert jetbrains.json()["user_id"] == "pycharm-ai-chat" and texts(jetbrains) == []
    assert texts(httpx.get(url + MEMORIES, params={"user_id": "bob"})) == []  # default-dev


def test_a_caller_forgets_one_memory_and_cannot_touch_another_ids(
    local: tuple[RouterApp, str],
) -> None:
    _, url = local
    alice_ids = {
        m["text"]: m["id"] for m in httpx.get(url + MEMORIES, headers=ALICE).json()["memories"]
    }
    bob = {"x-memory-user-id": "bob"}
    (bob_memory,) = httpx.get(url + MEMORIES, headers=bob).json()["memories"]

    refused = httpx.delete(f"{url}{MEMORIES}/{bob_memory['id']}", headers=ALICE)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "memory_not_found"
    assert texts(httpx.get(url + MEMORIES, headers=bob)) == [bob_memory["text"]]

    cat = alice_ids["User: my cat is called Ziggy\nAssistant: noted"]
    gone = httpx.delete(f"{url}{MEMORIES}/{cat}", headers=ALICE)
    assert gone.json() == {"user_id": "alice", "deleted": 1}
    assert texts(httpx.get(url + MEMORIES, headers=ALICE)) == [
        "User: I prefer tabs\nAssistant: noted"
    ]
    assert httpx.delete(f"{url}{MEMORIES}/{cat}", headers=ALICE).status_code == 404
    assert httpx.delete(f"{url}{MEMORIES}/not%20an%20id", headers=ALICE).status_code == 404


def test_forget_all_removes_only_the_callers_memories(local: tuple[RouterApp, str]) -> None:
    app, url = local
    assert httpx.delete(url + MEMORIES, headers=ALICE).json() == {"user_id": "alice", "deleted": 2}
    assert texts(httpx.get(url + MEMORIES, headers=ALICE)) == []
    assert texts(httpx.get(url + MEMORIES, headers={"x-memory-user-id": "bob"})) != []
    value = app.metrics.registry.get_sample_value(
        "memory_router_memory_operations_total",
        {"backend": "local", "operation": "forget_all", "outcome": "ok"},
    )
    assert value == 1


def test_errors_come_in_the_callers_format(local: tuple[RouterApp, str]) -> None:
    _, url = local
    bad = {"x-memory-user-id": "not valid!"}
    openai = httpx.get(url + MEMORIES, headers=bad)
    assert openai.status_code == 400
    assert openai.json()["error"]["code"] == "invalid_user_id"
    anthropic = httpx.get(url + MEMORIES, headers={**bad, "anthropic-version": "2023-06-01"})
    assert anthropic.status_code == 400
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    for limit in ("0", "101", "ten", "-1"):
        answer = httpx.get(url + MEMORIES, params={"limit": limit}, headers=ALICE)
        assert answer.status_code == 400, limit
        assert answer.json()["error"]["code"] == "invalid_limit"


def test_the_same_access_rules_as_the_other_control_endpoints(
    start_router: RouterFactory, store_path: Path
) -> None:
    _, url = start_router(
        memory_backend="local",
        memory_local_path=store_path,
        control_access="token",
        control_token="ctl-secret-token",
    )
    seed(store_path, "alice", "my cat is called Ziggy")
    for method, path in (("GET", MEMORIES), ("DELETE", MEMORIES), ("DELETE", MEMORIES + "/x")):
        refused = httpx.request(method, url + path, headers=ALICE)
        assert refused.status_code == 403, (method, path)
        assert refused.json()["error"]["code"] == "forbidden"
    token = {**ALICE, "Authorization": "Bearer ctl-secret-token"}
    assert texts(httpx.get(url + MEMORIES, headers=token)) == [
        "User: my cat is called Ziggy\nAssistant: noted"
    ]


def test_supermemory_router_reaches_the_same_pool_through_the_api(
    start_router: RouterFactory, double: Double
) -> None:
    app, url = start_router(
        memory_backend="supermemory-router",
        supermemory_api_key=double.api_key,
        memory_api_url=double.url,
    )
    assert app.memory is None  # Supermemory's proxy does the memory: no service here
    listed = httpx.get(url + MEMORIES, headers={"User-Agent": JAVA_UA})
    assert listed.json() == {
        "user_id": "pycharm-ai-chat",
        "backend": "supermemory-router",
        "query": None,
        "memories": [],
    }
    forgot = httpx.delete(url + MEMORIES, headers={"User-Agent": JAVA_UA})
    assert forgot.json() == {"user_id": "pycharm-ai-chat", "deleted": 0}
    calls = double.state.requests
    assert [(c["method"], c["path"]) for c in calls] == [
        ("POST", "/ns/pycharm-ai-chat/list/documents"),
        ("DELETE", "/ns/pycharm-ai-chat"),
    ]
    assert all(c["headers"]["authorization"] == f"Bearer {double.api_key}" for c in calls)


def test_a_failing_backend_is_a_clear_error(start_router: RouterFactory, double: Double) -> None:
    _, url = start_router(
        memory_backend="supermemory-api",
        supermemory_api_key=double.api_key,
        memory_api_url=double.url,
    )
    double.state.fail_next.extend([503, 401])
    down = httpx.get(url + MEMORIES, headers=ALICE)
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "memory_backend_unavailable"
    refused = httpx.get(url + MEMORIES, headers={**ALICE, "anthropic-version": "2023-06-01"})
    assert refused.status_code == 502
    assert refused.json() == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "The memory backend refused or failed the request.",
        },
    }


@pytest.mark.parametrize(("backend", "key"), [("off", "sm_k_unused"), ("supermemory-router", None)])
def test_no_memories_to_reach(start_router: RouterFactory, backend: str, key: str | None) -> None:
    _, url = start_router(memory_backend=backend, supermemory_api_key=key)
    for method in ("GET", "DELETE"):
        answer = httpx.request(method, url + MEMORIES, headers=ALICE)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "memory_off"
    # Other paths under /memory-routing/ are the router's too: never forwarded.
    assert httpx.get(url + "/memory-routing/elsewhere").status_code == 404
